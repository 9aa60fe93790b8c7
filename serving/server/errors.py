"""Errors a serving request can end in, with their gRPC and HTTP codes.

Library code raises these; the gRPC and REST front ends turn them into a
status (gRPC) or a status code and ``{"error": message}`` body (REST), with
the same mapping TF Serving uses, so clients see the same failures from this
server as from ``tensorflow_model_server``.
"""

import grpc


class ServingError(Exception):
    """A request failed; `grpc_code` and `http_status` say how to report it.

    Subclasses name their codes in the class statement:
    `class NotFound(ServingError, grpc_code=grpc.StatusCode.NOT_FOUND, http_status=404)`.
    """

    grpc_code = grpc.StatusCode.INTERNAL
    http_status = 500

    def __init_subclass__(cls, *, grpc_code, http_status, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.grpc_code = grpc_code
        cls.http_status = http_status

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class InvalidArgument(ServingError, grpc_code=grpc.StatusCode.INVALID_ARGUMENT, http_status=400):
    """Malformed request: wrong dtype or shape, not an image, empty batch."""


class FailedPrecondition(ServingError, grpc_code=grpc.StatusCode.FAILED_PRECONDITION, http_status=400):
    """The request names something the model does not have (a signature)."""


class NotFound(ServingError, grpc_code=grpc.StatusCode.NOT_FOUND, http_status=404):
    """Unknown model name or version."""


class ResourceExhausted(ServingError, grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED, http_status=429):
    """Over a limit: request size or the batching queue."""


class RequestTooLarge(ServingError, grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED, http_status=413):
    """A request over a per-request cap: body bytes, images, decoded pixels or
    the size of the response it would need (gRPC RESOURCE_EXHAUSTED, HTTP 413)."""


class DeadlineExceeded(ServingError, grpc_code=grpc.StatusCode.DEADLINE_EXCEEDED, http_status=408):
    """A REST client did not send its whole request in time."""


class Unavailable(ServingError, grpc_code=grpc.StatusCode.UNAVAILABLE, http_status=503):
    """No version of the model is loaded yet, or the server is stopping."""
