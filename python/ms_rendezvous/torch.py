"""PyTorch adapter: a ``torch.distributed.Store`` backed by the job's key/value store in the
ms-rendezvous daemon, and an ``init_process_group`` that takes ranks from the daemon.

    import torch, torch.distributed as dist
    import ms_rendezvous.torch as msr_torch

    topo = msr_torch.init_process_group("gloo")      # MS_SCHED_HOST, MS_SCHED_PORT, MS_WORKER_NUM, ...
    t = torch.ones(4) * (topo.rank + 1)
    dist.all_reduce(t)                                 # sum over the job
    ...
    # at exit: destroy_process_group() and Client.leave() run automatically (atexit)

Store semantics follow torch 1.13's documented ``Store`` contract (and what its TCPStore and
HashStore do where the documentation is silent):

* ``set(key, value)``: str or bytes value; overwrites and releases waiters.
* ``get(key) -> bytes``: blocks until the key exists, at most ``timeout`` (the store's timeout,
  see ``set_timeout``); raises :class:`StoreTimeoutError` (a ``RuntimeError`` and a
  ``TimeoutError``) naming the key. A zero timeout waits forever (torch's ``kNoTimeout``).
* ``add(key, delta) -> int``: atomic in the daemon; a missing key counts as 0.
* ``compare_set(key, expected, desired) -> bytes``: when the value equals ``expected`` (or the key
  is missing and ``expected`` is empty) it becomes ``desired``. Returns the value after the call;
  for a missing key with a non-empty ``expected`` nothing is created and ``expected`` is returned
  (as torch's TCPStore and HashStore do).
* ``wait(keys[, timeout])``: blocks until every key exists; raises :class:`StoreTimeoutError`
  listing the missing keys. Without ``timeout`` the store's timeout applies.
* ``check(keys) -> bool``: whether every key exists now (no waiting).
* ``delete_key(key) -> bool``: True when the key existed.
* ``num_keys() -> int``: the number of keys in the job's store (every prefix: like TCPStore's,
  it includes keys torch writes itself).

When the job fails (another member died or reported an error) every pending and later call
raises the client's :class:`ms_rendezvous.AbortedError` whose message names the dead member; it
is not swallowed or turned into a timeout.

Keys are stored under ``prefix`` (``init_process_group`` uses ``"torch/g<generation>/"`` so that a
job id reused for a new formation never sees the keys of an earlier one).
"""

import atexit
import threading
from datetime import timedelta
from typing import Iterable, List, Optional, Union

import torch.distributed as _dist

import ms_rendezvous as _msr

__all__ = [
    "Store",
    "StoreTimeoutError",
    "init_process_group",
    "destroy_process_group",
    "get_client",
    "get_store",
    "get_topology",
]

# torch's default store timeout (c10d::Store::kDefaultTimeout).
_DEFAULT_STORE_TIMEOUT = timedelta(seconds=300)


class StoreTimeoutError(RuntimeError, TimeoutError):
    """A blocking store call (get, wait) timed out. A ``RuntimeError`` like torch's own store
    timeouts, and a ``TimeoutError``."""


def _to_bytes(value) -> bytes:
    """torch hands values over as str (Python callers), bytes, or a list of ints (C++ callers
    through the pybind11 trampoline, e.g. compare_set from a PrefixStore)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return bytes(value)
    raise TypeError(
        f"ms_rendezvous.torch.Store: value must be str or bytes, not {type(value).__name__}")


def _to_key(key) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("utf-8")
    raise TypeError(f"ms_rendezvous.torch.Store: key must be str, not {type(key).__name__}")


def _to_seconds(timeout) -> Optional[float]:
    """torch timeout -> seconds for the client; None = wait forever (torch's kNoTimeout is 0)."""
    if isinstance(timeout, timedelta):
        seconds = timeout.total_seconds()
    else:
        seconds = float(timeout)
    if seconds < 0:
        raise ValueError(f"ms_rendezvous.torch.Store: negative timeout {timeout!r}")
    if seconds == 0:
        return None
    return seconds


def _fmt_timeout(seconds: Optional[float]) -> str:
    return "no timeout" if seconds is None else f"{seconds:g}s"


class Store(_dist.Store):
    """A ``torch.distributed.Store`` on the job key/value store of a joined
    :class:`ms_rendezvous.Client`.

    Args:
        client: a client that has joined its job (``client.join()``); the store does not own it.
        prefix: prepended to every key (e.g. ``"torch/g3/"``).
        timeout: the store's timeout for ``get`` and ``wait`` (torch's default: 300 s).

    Keep this Python object alive while torch uses the store from C++ (a ``PrefixStore`` around
    it, a process group): torch 1.13's pybind11 trampoline finds the Python methods through it.
    ``init_process_group`` keeps its store in this module.
    """

    def __init__(self, client, prefix: str = "", timeout: timedelta = _DEFAULT_STORE_TIMEOUT):
        super().__init__()
        self._client = client
        self._prefix = prefix
        self.set_timeout(timeout)

    # --- helpers ------------------------------------------------------------------------------
    @property
    def client(self):
        return self._client

    @property
    def prefix(self) -> str:
        return self._prefix

    def _k(self, key) -> str:
        return self._prefix + _to_key(key)

    def _timeout_s(self, timeout=None) -> Optional[float]:
        return _to_seconds(self.timeout if timeout is None else timeout)

    # --- torch.distributed.Store ----------------------------------------------------------------
    def set(self, key, value) -> None:
        self._client.kv_set(self._k(key), _to_bytes(value))

    def get(self, key) -> bytes:
        seconds = self._timeout_s()
        try:
            return bytes(self._client.kv_get(self._k(key), timeout=seconds))
        except _msr.DeadlineExceededError as e:
            raise StoreTimeoutError(
                f"ms_rendezvous.torch.Store.get: timed out after {_fmt_timeout(seconds)} waiting "
                f"for key '{_to_key(key)}' (stored as '{self._k(key)}'): {e}") from e

    def add(self, key, value) -> int:
        return int(self._client.kv_add(self._k(key), int(value)))

    def compare_set(self, key, expected_value, desired_value) -> bytes:
        expected = _to_bytes(expected_value)
        desired = _to_bytes(desired_value)
        value, swapped = self._client.kv_compare_set(self._k(key), expected, desired)
        value = bytes(value)
        if not swapped and value == b"" and expected != b"":
            # The daemon answers "" both for a missing key and for a key holding "". torch's
            # TCPStore/HashStore return `expected` for a missing key: tell the two apart.
            try:
                self._client.kv_try_get(self._k(key))
            except _msr.NotFoundError:
                return expected
        return value

    def wait(self, keys: Iterable, timeout: Optional[timedelta] = None) -> None:
        names = [_to_key(k) for k in keys]
        seconds = self._timeout_s(timeout)
        try:
            self._client.kv_wait([self._prefix + k for k in names], timeout=seconds)
        except _msr.DeadlineExceededError as e:
            raise StoreTimeoutError(
                f"ms_rendezvous.torch.Store.wait: timed out after {_fmt_timeout(seconds)} waiting "
                f"for keys {names}: {e}") from e

    def check(self, keys: Iterable) -> bool:
        names = [self._k(k) for k in keys]
        if not names:
            return True
        try:
            self._client.kv_wait(names, timeout=0)  # 0: check once, no waiting
        except (_msr.DeadlineExceededError, _msr.NotFoundError):
            return False
        return True

    def delete_key(self, key) -> bool:
        return bool(self._client.kv_delete(self._k(key)))

    def num_keys(self) -> int:
        return int(self._client.kv_num_keys())

    # torch 1.13's C++ trampoline (PythonStore) looks these up by their C++ names when the store
    # is used from C++ (PrefixStore, ProcessGroupGloo): map them to the Python names.
    def deleteKey(self, key) -> bool:  # noqa: N802
        return self.delete_key(key)

    def getNumKeys(self) -> int:  # noqa: N802
        return self.num_keys()

    def __repr__(self) -> str:
        return f"ms_rendezvous.torch.Store(prefix={self._prefix!r}, timeout={self.timeout})"


# --- process group ------------------------------------------------------------------------------
_lock = threading.Lock()
_client = None
_store: Optional[Store] = None
_topology = None
_atexit_registered = False


def get_client():
    """The client ``init_process_group`` joined with (None before)."""
    return _client


def get_store() -> Optional[Store]:
    """The store ``init_process_group`` built (None before)."""
    return _store


def get_topology():
    """The topology ``init_process_group`` returned (None before)."""
    return _topology


def init_process_group(backend: str = "gloo", timeout: Optional[timedelta] = None, **kwargs):
    """Joins the job described by the environment (MS_ROLE, MS_SCHED_HOST, MS_SCHED_PORT,
    MS_WORKER_NUM, MS_JOB_ID, ...), builds a :class:`Store` on the job's key/value store and
    calls ``torch.distributed.init_process_group(backend, store=..., rank=topo.rank,
    world_size=topo.world_size, timeout=timeout, **kwargs)``. Returns the topology.

    ``timeout`` (default: torch's default process group timeout) is also the store's timeout.
    The client stays alive in this module; at interpreter exit the process group is destroyed
    and the client leaves the job (or call :func:`destroy_process_group`).
    Errors: the client's (``ms_rendezvous.RendezvousError`` subclasses) while joining, torch's
    while initialising the group; RuntimeError when already initialised.
    """
    global _client, _store, _topology, _atexit_registered
    for name in ("store", "rank", "world_size", "init_method"):
        if name in kwargs:
            raise ValueError(f"ms_rendezvous.torch.init_process_group sets {name} itself")
    if timeout is None:
        from torch.distributed.constants import default_pg_timeout
        timeout = default_pg_timeout
    if not isinstance(timeout, timedelta):
        raise TypeError(f"timeout must be a datetime.timedelta, not {type(timeout).__name__}")
    with _lock:
        if _client is not None or _dist.is_initialized():
            raise RuntimeError("ms_rendezvous.torch.init_process_group: the default process group "
                               "is already initialised")
        client = _msr.Client.from_env()
        topo = client.join()
        try:
            generation = getattr(topo, "generation", 0)
            store = Store(client, prefix=f"torch/g{generation}/", timeout=timeout)
            _dist.init_process_group(backend, store=store, rank=int(topo.rank),
                                     world_size=int(topo.world_size), timeout=timeout, **kwargs)
        except BaseException:
            try:
                client.leave()
            except Exception:  # best effort: the original error matters
                pass
            raise
        _client, _store, _topology = client, store, topo
        if not _atexit_registered:
            atexit.register(_atexit_cleanup)
            _atexit_registered = True
        return topo


def destroy_process_group() -> None:
    """Destroys torch's default process group (when initialised) and leaves the job. Idempotent."""
    global _client, _store, _topology
    with _lock:
        client = _client
        _client, _store, _topology = None, None, None
    try:
        if _dist.is_initialized():
            _dist.destroy_process_group()
    finally:
        if client is not None:
            try:
                client.leave()
            except _msr.RendezvousError:
                # Already failed (the job failed) or left: nothing to tell the daemon.
                pass


def _atexit_cleanup() -> None:
    try:
        destroy_process_group()
    except Exception:
        pass
