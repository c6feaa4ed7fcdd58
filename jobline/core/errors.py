"""The exceptions jobline raises; the API maps each to one problem document."""

from __future__ import annotations


class JoblineError(Exception):
    """Base class of every error jobline raises on purpose."""

    status = 500
    title = "Internal error"


class JobNotFound(JoblineError):
    """No job with that id (or not one the caller may see)."""

    status = 404
    title = "Job not found"


class UnknownJobType(JoblineError):
    """The job type is not in the catalogue."""

    status = 422
    title = "Unknown job type"


class InvalidTransition(JoblineError):
    """The job is not in a state that allows the requested change."""

    status = 409
    title = "Invalid state transition"


class KeyInUse(JoblineError):
    """An Idempotency-Key already names a job submitted with another request."""

    status = 409
    title = "Idempotency key in use"


class Unavailable(JoblineError):
    """A backing server (MongoDB or the broker) cannot be reached."""

    status = 503
    title = "Service unavailable"
    retry_after = 5


class StoreUnavailable(Unavailable):
    """MongoDB cannot be reached."""

    title = "Job store unavailable"


class BrokerUnavailable(Unavailable):
    """The Celery broker cannot be reached."""

    title = "Broker unavailable"


class QueueFull(Unavailable):
    """The job's queue is deeper than JOBLINE_MAX_QUEUE_DEPTH: back off and retry."""

    title = "Queue full"
    retry_after = 2


class Unauthorized(JoblineError):
    """No valid API key was presented."""

    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str, *, invalid: bool = False) -> None:
        super().__init__(detail)
        challenge = 'Bearer realm="jobline"'
        if invalid:
            challenge += ', error="invalid_token"'
        self.headers = {"WWW-Authenticate": challenge}


class JobCancelled(Exception):
    """Raised inside a running job when it has been cancelled."""


class TransientError(Exception):
    """A failure worth retrying; job types may name others in their retry policy."""


class FileNotFound(JoblineError):
    """No file with that id or name (or not one the caller may see)."""

    status = 404
    title = "File not found"


class FileInUse(JoblineError):
    """The file is an input of a job that has not finished."""

    status = 409
    title = "File in use"


class FileTooLarge(JoblineError):
    """An upload past JOBLINE_MAX_FILE_BYTES; nothing of it is kept."""

    status = 413
    title = "File too large"


class BadJobInput(Exception):
    """Raised inside a running job whose input cannot be used (a file deleted under it).

    The job fails with reason ``bad_input`` and is not retried: running it again
    would meet the same input.
    """

    reason = "bad_input"
