"""Errors the data plane raises, and the one table that maps each to an HTTP status."""

# ruff: noqa: N818  (KServe-style names: the status reads better than an Error suffix)

from __future__ import annotations

from .backends.base import BackendError, BackendInputError, BackendUnavailable


class ServingError(Exception):
    """Base of the errors a client can be told about; `status` is the HTTP status. A 5xx may set
    `public`, the message a client gets instead of the full one (which is logged)."""

    status = 500

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public


class InvalidInput(ServingError):
    status = 400


class Unauthorized(ServingError):
    status = 401


class Forbidden(ServingError):
    status = 403


class ModelNotFound(ServingError):
    status = 404


class PayloadTooLarge(ServingError):
    status = 413


class UnsupportedMediaType(ServingError):
    status = 415


class RequestBodyTimeout(ServingError):
    status = 408


class QueueFull(ServingError):
    status = 429

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelNotReady(ServingError):
    status = 503


class RequestTimeout(ServingError):
    status = 504


class InferenceFailed(ServingError):
    status = 500


def status_of(exc: BaseException) -> int:
    """The HTTP status for any exception the data plane lets out."""
    if isinstance(exc, ServingError):
        return exc.status
    if isinstance(exc, BackendInputError):
        return 400
    if isinstance(exc, BackendUnavailable):
        return 503
    if isinstance(exc, BackendError):
        return 500
    return 500


def public_message(exc: BaseException, status: int) -> str:
    """What a client is told. A 5xx never carries runtime internals, paths or digests (those go to the
    log): a 500 says only that it was ours, a 503 what the server's state is."""
    if status < 500 or isinstance(exc, RequestTimeout | QueueFull):
        return one_line(str(exc))
    if isinstance(exc, ServingError) and exc.public is not None:
        return exc.public
    return "internal error: the request could not be served (details are in the server log)"


def one_line(text: str, limit: int = 2000) -> str:
    """`text` safe for one log line or error body: control characters escaped (a tensor name with a
    newline cannot forge a log line), and at most `limit` characters."""
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."
