"""Exceptions of ms_rendezvous: one class per gRPC/absl status code.

Every error of the client library is raised as a subclass of :class:`RendezvousError` that keeps
the status code name (``.code``, e.g. ``"DEADLINE_EXCEEDED"``) and the message (``.message``) as
the daemon or the client library produced them. Where a builtin exception means the same thing,
the class derives from it too, so generic handlers work::

    except TimeoutError:            # DeadlineExceededError
    except ConnectionError:         # UnavailableError
    except ValueError:              # InvalidArgumentError
    except LookupError:             # NotFoundError
"""

from typing import Dict, Type


class RendezvousError(Exception):
    """Base class of every ms_rendezvous error.

    Attributes:
        code: the status code name ("ABORTED", "DEADLINE_EXCEEDED", ...).
        message: the status message.
    """

    code: str = "UNKNOWN"

    def __init__(self, message: str = "", code: str = "") -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"

    def __reduce__(self):
        return (type(self), (self.message, self.code))


class InvalidArgumentError(RendezvousError, ValueError):
    """INVALID_ARGUMENT: a malformed argument, option or environment variable."""

    code = "INVALID_ARGUMENT"


class NotFoundError(RendezvousError, LookupError):
    """NOT_FOUND: a missing key (kv_try_get) or an unknown job."""

    code = "NOT_FOUND"


class AlreadyExistsError(RendezvousError):
    """ALREADY_EXISTS: e.g. this node id is already registered in the job."""

    code = "ALREADY_EXISTS"


class FailedPreconditionError(RendezvousError):
    """FAILED_PRECONDITION: e.g. not joined, already joined, job shape mismatch."""

    code = "FAILED_PRECONDITION"


class ResourceExhaustedError(RendezvousError):
    """RESOURCE_EXHAUSTED: a KV limit, or the job already has every member."""

    code = "RESOURCE_EXHAUSTED"


class DeadlineExceededError(RendezvousError, TimeoutError):
    """DEADLINE_EXCEEDED: a timeout expired (the message names the keys / members missing)."""

    code = "DEADLINE_EXCEEDED"


class UnavailableError(RendezvousError, ConnectionError):
    """UNAVAILABLE: the daemon could not be reached."""

    code = "UNAVAILABLE"


class AbortedError(RendezvousError):
    """ABORTED: the job failed (the message names the dead members) or the session was lost."""

    code = "ABORTED"


class CancelledError(RendezvousError):
    """CANCELLED: the call was cancelled."""

    code = "CANCELLED"


class PermissionDeniedError(RendezvousError):
    """PERMISSION_DENIED."""

    code = "PERMISSION_DENIED"


class UnauthenticatedError(RendezvousError):
    """UNAUTHENTICATED."""

    code = "UNAUTHENTICATED"


class InternalError(RendezvousError):
    """INTERNAL: a bug or an unexpected answer."""

    code = "INTERNAL"


#: status code name -> exception class (codes not listed raise RendezvousError).
ERRORS_BY_CODE: Dict[str, Type[RendezvousError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        ResourceExhaustedError,
        DeadlineExceededError,
        UnavailableError,
        AbortedError,
        CancelledError,
        PermissionDeniedError,
        UnauthenticatedError,
        InternalError,
    )
}


def _make_error(code: str, message: str) -> RendezvousError:
    """The exception for a status (used by the extension)."""
    return ERRORS_BY_CODE.get(code, RendezvousError)(message, code)
