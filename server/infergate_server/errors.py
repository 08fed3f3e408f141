"""Errors the data plane raises, and the one table that maps each to an HTTP status."""

# ruff: noqa: N818  (KServe-style names: the status reads better than an Error suffix)

from __future__ import annotations

from .backends.base import BackendError, BackendUnavailable


class ServingError(Exception):
    """Base of the errors a client can be told about; `status` is the HTTP status."""

    status = 500


class InvalidInput(ServingError):
    status = 400


class ModelNotFound(ServingError):
    status = 404


class PayloadTooLarge(ServingError):
    status = 413


class UnsupportedMediaType(ServingError):
    status = 415


class QueueFull(ServingError):
    status = 429


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
    if isinstance(exc, BackendUnavailable):
        return 503
    if isinstance(exc, BackendError):
        return 500
    return 500
