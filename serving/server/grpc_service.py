"""gRPC PredictionService and ModelService, as tensorflow_model_server offers them.

Implemented: PredictionService.Predict and .GetModelMetadata (field
"signature_def"), ModelService.GetModelStatus. Classify, Regress,
MultiInference and HandleReloadConfigRequest answer UNIMPLEMENTED (the
stubs' defaults). A request over `max_request_bytes` is refused by gRPC
itself with RESOURCE_EXHAUSTED before it reaches the model.
"""

import concurrent.futures

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.server import errors
from serving.server.dispatch import output_subset

# tensorflow.error.Code values used in ModelVersionStatus.status.
_OK, _UNKNOWN = 0, 2
_SIGNATURE_DEF_FIELD = "signature_def"


def _requested_version(model_spec):
    if model_spec.version_label:
        raise errors.NotFound(f"version label '{model_spec.version_label}' is not defined on this server")
    return model_spec.version.value if model_spec.HasField("version") else None


# Dtypes a request tensor may have: plain values. DT_VARIANT, DT_RESOURCE and
# the quantized types carry no NumPy value (make_ndarray raised KeyError:
# UNKNOWN instead of INVALID_ARGUMENT, issue 19).
_VALUE_DTYPES = frozenset([
    tf.bool, tf.string, tf.int8, tf.int16, tf.int32, tf.int64, tf.uint8, tf.uint16, tf.uint32, tf.uint64,
    tf.float16, tf.bfloat16, tf.float32, tf.float64, tf.complex64, tf.complex128,
])


def tensor_proto_to_array(name, proto, dispatcher):
    """TensorProto → NumPy; malformed or oversized tensors are refused."""
    try:
        dtype = tf.dtypes.as_dtype(proto.dtype)
    except TypeError:
        raise errors.InvalidArgument(f"input '{name}' has an unknown dtype {proto.dtype}") from None
    if dtype not in _VALUE_DTYPES:
        raise errors.InvalidArgument(f"input '{name}' has dtype {dtype.name}, which a request cannot carry")
    shape = [dim.size for dim in proto.tensor_shape.dim]
    itemsize = 1 if dtype == tf.string else dtype.size
    dispatcher.check_decoded_size(name, shape, itemsize)
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError, KeyError) as error:
        raise errors.InvalidArgument(f"input '{name}' is not a valid TensorProto: {error}") from None


def _status_of(error):
    """(gRPC code, message) for any error a call ended in; never UNKNOWN."""
    if isinstance(error, errors.ServingError):
        return error.grpc_code, error.message
    if isinstance(error, RecursionError):
        return grpc.StatusCode.INVALID_ARGUMENT, "request is nested too deeply"
    return grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}: {error}"


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata over a RequestDispatcher."""

    def __init__(self, dispatcher):
        self._dispatcher = dispatcher

    def Predict(self, request, context):
        try:
            return self._predict(request)
        except Exception as error:  # noqa: BLE001 - every failure gets a status
            context.abort(*_status_of(error))

    def _predict(self, request):
        inputs = {
            name: tensor_proto_to_array(name, proto, self._dispatcher)
            for name, proto in request.inputs.items()
        }
        version, signature_name, outputs = self._dispatcher.predict(
            request.model_spec.name,
            _requested_version(request.model_spec),
            request.model_spec.signature_name,
            inputs,
        )
        outputs = output_subset(outputs, list(request.output_filter))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = signature_name
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(np.ascontiguousarray(value)))
        return response

    def GetModelMetadata(self, request, context):
        try:
            fields = list(request.metadata_field)
            if not fields:
                raise errors.InvalidArgument("GetModelMetadataRequest must name at least one metadata_field")
            unsupported = [field for field in fields if field != _SIGNATURE_DEF_FIELD]
            if unsupported:
                raise errors.InvalidArgument(
                    f"metadata_field {unsupported} not supported; only '{_SIGNATURE_DEF_FIELD}'"
                )
            version, signature_defs = self._dispatcher.metadata(
                request.model_spec.name, _requested_version(request.model_spec)
            )
        except Exception as error:  # noqa: BLE001 - every failure gets a status
            context.abort(*_status_of(error))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature_def)
        response.metadata[_SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response


def status_response(statuses):
    """GetModelStatusResponse from VersionStatus entries."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        entry = response.model_version_status.add()
        entry.version = status.version
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(status.state)
        entry.status.error_code = _UNKNOWN if status.error_message else _OK
        entry.status.error_message = status.error_message
    return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus over a RequestDispatcher."""

    def __init__(self, dispatcher):
        self._dispatcher = dispatcher

    def GetModelStatus(self, request, context):
        try:
            statuses = self._dispatcher.statuses(
                request.model_spec.name, _requested_version(request.model_spec)
            )
        except Exception as error:  # noqa: BLE001 - every failure gets a status
            context.abort(*_status_of(error))
        return status_response(statuses)


def start_grpc_server(dispatcher, *, host, port, max_workers=16):
    """Starts a gRPC server on host:port (0 = any free port).

    Returns:
        (grpc.Server, the bound port).

    Raises:
        OSError: the address cannot be bound.
    """
    limit = dispatcher.max_request_bytes
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        # Calls past this many (running + waiting for a thread) get
        # RESOURCE_EXHAUSTED at once instead of queueing without bound.
        maximum_concurrent_rpcs=max_workers * 4,
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),  # a busy port must fail, not be shared
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(dispatcher), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(dispatcher), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as error:
        raise OSError(f"cannot bind gRPC to {address}: {error}") from error
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {address}")
    server.start()
    return server, bound
