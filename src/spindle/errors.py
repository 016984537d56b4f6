"""One exception root for Spindle, with no HTTP in it.

Each class carries the HTTP status it maps to as data (``status_code``); the API turns any
:class:`SpindleError` into the WES ``ErrorResponse`` in exactly one handler, and the CLI
prints its message. The class docstring is the default message.
"""

from __future__ import annotations


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


class ConfigError(SpindleError):
    """Spindle's configuration is invalid."""


class EngineUnavailable(SpindleError):
    """A workflow engine is not installed or does not start."""


class BackendError(SpindleError):
    """The compute environment failed to do what was asked."""


class Unreachable(BackendError):
    """The compute environment cannot be reached right now; Spindle retries."""

    status_code = 503
