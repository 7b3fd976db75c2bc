"""ms_rendezvous: join a training job through the ms-rendezvous daemon from Python.

Quick start::

    import ms_rendezvous as msr

    r = msr.init()                    # dynamic cluster (MS_ROLE...), OpenMPI or rank table
    print(r.method, r.topology.rank, r.topology.world_size)
    if r.client is not None:          # a daemon is involved: job KV store, barriers, failures
        r.client.kv_set("addr/%d" % r.topology.rank, b"10.0.0.1:29500")
        peer = r.client.kv_get("addr/0", timeout=60)
        r.client.barrier("ready", timeout=60)
        r.client.leave()

Or explicitly::

    c = msr.Client.from_env()         # MS_SCHED_HOST, MS_SCHED_PORT, MS_WORKER_NUM, ...
    t = c.join()                      # blocks until every expected member joined

Blocking calls (join, kv_get, kv_wait, barrier, fetch_root_info, init) release the GIL and can
be interrupted with Ctrl-C (KeyboardInterrupt): the Python call returns at once, while the
underlying C++ call keeps running on a background thread until it finishes on its own (its
result is discarded; the Client stays alive until then).

Errors are :class:`RendezvousError` subclasses keeping the gRPC status code and message;
see :mod:`ms_rendezvous._errors`.
"""

from ._errors import (
    AbortedError,
    AlreadyExistsError,
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RendezvousError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from ._ms_rendezvous import Client, InitResult, Topology, init

__version__ = "0.1.0"

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "CancelledError",
    "Client",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InitResult",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "RendezvousError",
    "ResourceExhaustedError",
    "Topology",
    "UnauthenticatedError",
    "UnavailableError",
    "init",
]
