"""One exception root for Spindle, with no HTTP in it.

Each class carries the HTTP status it maps to as data (``status_code``); the API turns any
:class:`SpindleError` into the WES ``ErrorResponse`` in exactly one handler, and the CLI
prints its message. The class docstring is the default message.
"""

from __future__ import annotations

import errno


class SpindleError(Exception):
    """Spindle could not do what was asked."""

    status_code: int = 500

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip().splitlines()[0]
        super().__init__(self.message)


class InvalidRequest(SpindleError):
    """The request is malformed."""

    status_code = 400

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class InvalidPath(InvalidRequest):
    """A file name would leave its folder."""

    def __init__(self, field: str, name: str, problem: str) -> None:
        self.name = name
        super().__init__(field, f"{name!r} {problem}")


class PayloadTooLarge(SpindleError):
    """The upload is larger than this service accepts."""

    status_code = 413


class NotFound(SpindleError):
    """The requested object was not found."""

    status_code = 404


class RunNotFound(NotFound):
    """The requested workflow run was not found."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id!r} was not found")


class GroupNotFound(NotFound):
    """The requested run group was not found."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        super().__init__(f"run group {group_id!r} was not found")


class TaskNotFound(NotFound):
    """The requested task was not found."""

    def __init__(self, run_id: str, task_id: str) -> None:
        super().__init__(f"task {task_id!r} of run {run_id!r} was not found")


class Unauthenticated(SpindleError):
    """The request needs credentials that were missing or not valid."""

    status_code = 401

    def __init__(self, message: str | None = None, *, error: str | None = None) -> None:
        #: RFC 6750 error code for a bearer token that was refused (``invalid_token``,
        #: ``invalid_request``); None when no credentials came at all. The message never
        #: carries the credentials themselves.
        self.error = error
        super().__init__(message)


class Forbidden(SpindleError):
    """The caller is known but not allowed to do this."""

    status_code = 403


class TooManyRequests(SpindleError):
    """Too many requests of this kind; try again later."""

    status_code = 429

    def __init__(self, message: str | None = None, *, retry_after: int = 60) -> None:
        #: whole seconds after which asking again can succeed (the ``Retry-After`` header)
        self.retry_after = max(1, retry_after)
        super().__init__(message)


class Conflict(SpindleError):
    """The request conflicts with the current state of the object (it exists already, it is
    not empty, it is no longer queued)."""

    status_code = 409


class ServiceUnavailable(SpindleError):
    """A service Spindle depends on did not answer; try again later."""

    status_code = 503
    #: seconds a client is asked to wait before trying again (``Retry-After``), if known
    retry_after: int | None = None


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached; try again later."""

    #: seconds a client is asked to wait before trying again (``Retry-After``)
    retry_after = 5


class StorageError(SpindleError):
    """Spindle could not write to its data folder."""

    def __init__(self, action: str, exc: OSError, where: object = None) -> None:
        self.path = exc.filename if exc.filename is not None else where
        place = f" in {where}" if exc.filename is None and where is not None else ""
        super().__init__(f"{action}{place}: {describe(exc)}")


class InsufficientStorage(StorageError):
    """The data folder's disk is full."""

    status_code = 507


def storage_error(action: str, exc: OSError, where: object = None) -> StorageError:
    """The StorageError for an OSError met while writing (``where``: the folder, named when
    the error has no path of its own): 507 for a full disk or quota."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InsufficientStorage(action, exc, where)
    return StorageError(action, exc, where)


def describe(exc: BaseException) -> str:
    """An exception as a one-line reason that keeps what ``repr`` drops: an OSError's path
    (``PermissionError: [Errno 1] Operation not permitted: '/data/runs/x/exit_code'``)."""
    if isinstance(exc, SpindleError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename!r}" if exc.filename is not None else ""
        if exc.filename2 is not None:
            where += f" -> {exc.filename2!r}"
        return f"{type(exc).__name__}: {exc.strerror}{where}"
    return repr(exc)


class ConfigError(SpindleError):
    """Spindle's configuration is invalid."""


class EngineUnavailable(SpindleError):
    """A workflow engine is not installed or does not start."""


class EngineSlow(EngineUnavailable):
    """A workflow engine did not answer in time (it may be installed on a busy machine)."""


class EngineChecking(ServiceUnavailable):
    """An installed workflow engine is still being checked; try again shortly."""

    retry_after = 10


class BackendError(SpindleError):
    """The compute environment failed to do what was asked."""


class Unreachable(BackendError):
    """The compute environment cannot be reached right now; Spindle retries."""

    status_code = 503
