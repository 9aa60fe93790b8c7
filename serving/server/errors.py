"""Errors a serving request can end in, with their gRPC and HTTP codes.

Library code raises these; the gRPC and REST front ends turn them into a
status (gRPC) or a status code and ``{"error": message}`` body (REST), with
the same mapping TF Serving uses, so clients see the same failures from this
server as from ``tensorflow_model_server``.
"""

import grpc


class ServingError(Exception):
    """A request failed; `grpc_code` and `http_status` say how to report it."""

    grpc_code = grpc.StatusCode.INTERNAL
    http_status = 500

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class InvalidArgument(ServingError):
    """Malformed request: wrong dtype or shape, not an image, empty batch."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class FailedPrecondition(ServingError):
    """The request names something the model does not have (a signature)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 400


class NotFound(ServingError):
    """Unknown model name or version."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class ResourceExhausted(ServingError):
    """Over a limit: request size or the batching queue."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class Unavailable(ServingError):
    """No version of the model is loaded yet, or the server is stopping."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
