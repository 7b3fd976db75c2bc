"""Type stubs of the ms_rendezvous extension (python/src/module.cc)."""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

_Bytes = Union[bytes, bytearray, str]
_Timeout = Optional[float]
SessionEvent = Dict[str, Any]
"""type, job_id, job_state, generation, message, dead (list of dicts: role, rank, node_id, host,
reason, last_seen_s_ago), member (dict or None), status_code, status_message, topology."""
MemberDict = Dict[str, Any]
"""node_id, role, rank (None before completion), local_rank, node_rank, host, host_name,
device_id, device_ip, state, last_heartbeat_age_s, incarnation."""

class Topology:
    """Where this process landed in the job. Ranks count per role."""

    @property
    def job_id(self) -> str: ...
    @property
    def role(self) -> str:
        """"MS_WORKER" or "MS_PSERVER"."""
    @property
    def node_id(self) -> str: ...
    @property
    def rank(self) -> int: ...
    @property
    def world_size(self) -> int: ...
    @property
    def local_rank(self) -> int: ...
    @property
    def local_world_size(self) -> int: ...
    @property
    def node_rank(self) -> int: ...
    @property
    def num_nodes(self) -> int: ...
    @property
    def host(self) -> str: ...
    @property
    def generation(self) -> int: ...
    @property
    def incarnation(self) -> int: ...
    @property
    def worker_num(self) -> int: ...
    @property
    def server_num(self) -> int: ...
    def as_dict(self) -> Dict[str, Union[str, int]]:
        """Every attribute as a dict."""

class InitResult:
    """What init() found."""

    @property
    def method(self) -> str:
        """"dynamic_cluster", "openmpi" or "rank_table"."""
    @property
    def topology(self) -> Topology: ...
    @property
    def client(self) -> Optional[Client]:
        """The joined Client when a daemon is involved, else None."""
    @property
    def master_addr(self) -> str: ...

class Client:
    """A member of a training job talking to the ms-rendezvous daemon."""

    @staticmethod
    def from_env(env: Optional[Mapping[str, Optional[str]]] = None) -> Client:
        """Creates a client from MS_* variables; `env` overrides os.environ (None unsets)."""
    def join(self) -> Topology:
        """Joins and blocks until the job is complete. Interruptible with Ctrl-C."""
    def leave(self) -> None:
        """Leaves the job (idempotent)."""
    def close(self) -> None:
        """Destroys the client, leaving the job when joined."""
    def __enter__(self) -> Client: ...
    def __exit__(self, *args: Any) -> None: ...
    def report_error(self, reason: str) -> None:
        """Fails the job on behalf of this member with `reason`."""
    def session_status(self) -> None:
        """None while healthy; raises the session failure (AbortedError) otherwise."""
    def set_event_callback(self, fn: Optional[Callable[[SessionEvent], None]]) -> None:
        """fn(event) on the session thread with the GIL held; exceptions are printed."""
    def members(self) -> List[MemberDict]:
        """The job's member table."""
    def kv_set(self, key: _Bytes, value: _Bytes) -> None:
        """Creates or overwrites `key`."""
    def kv_get(self, key: _Bytes, timeout: _Timeout = None) -> bytes:
        """Waits up to `timeout` s (None: until the job ends) for `key`."""
    def kv_try_get(self, key: _Bytes) -> bytes:
        """The value without waiting; NotFoundError when missing."""
    def kv_wait(self, keys: Sequence[_Bytes], timeout: _Timeout = None) -> None:
        """Returns once every key exists; DeadlineExceededError lists the missing."""
    def kv_add(self, key: _Bytes, delta: int) -> int:
        """Atomic add to a decimal int64; returns the new value."""
    def kv_compare_set(self, key: _Bytes, expected: _Bytes, desired: _Bytes) -> Tuple[bytes, bool]:
        """torch compare_set; returns (value after the call, swapped)."""
    def kv_delete(self, key: _Bytes) -> bool:
        """True when the key existed."""
    def kv_list(self, prefix: _Bytes = b"") -> List[Tuple[bytes, bytes]]:
        """(key, value) pairs whose key starts with `prefix`, ordered by key."""
    def kv_num_keys(self) -> int:
        """Number of keys in the job's store."""
    def barrier(self, name: str, timeout: _Timeout, ranks: Optional[Sequence[int]] = None) -> None:
        """Blocks until every participant (`ranks`, None: all) arrived."""
    def publish_root_info(self, group: str, data: _Bytes) -> None:
        """Publishes the root info of `group` (rank 0 only)."""
    def fetch_root_info(self, group: str, timeout: _Timeout = None) -> bytes:
        """Waits for the root info of `group` (None: MS_TOPO_TIMEOUT)."""
    @property
    def node_id(self) -> str: ...
    @property
    def job_id(self) -> str: ...
    @property
    def target(self) -> str: ...

def init(env: Optional[Mapping[str, Optional[str]]] = None) -> InitResult:
    """Detects the startup method (dynamic cluster, OpenMPI, rank table) and returns the result."""
