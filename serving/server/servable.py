"""One loaded SavedModel version: request validation, batched runs, warmup.

A request is a dict {input name: NumPy array}; every input's first axis is the
batch axis. Several requests for the same signature (and equal non-batch
shapes) can be run as one call: inputs are concatenated, outputs split back
by each request's batch size.

Outputs padded to the largest image of a call (``saliency`` with ``height``
and ``width`` beside it, see serving/export/export.py) are cropped back to the
largest image of each request, so a request's answer does not depend on what
it was batched with.
"""

import os
import re

import numpy as np

from serving.server import errors

SAVED_MODEL_FILE = "saved_model.pb"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# Outputs that give each image's true size inside padded outputs.
SIZE_OUTPUTS = ("height", "width")


class Signature:
    """Input and output TensorSpecs of one signature, by name."""

    def __init__(self, name, function):
        self.name = name
        self.function = function
        _, self.inputs = function.structured_input_signature
        self.outputs = function.structured_outputs


class Servable:
    """A SavedModel version loaded with tf.saved_model.load.

    Attributes:
        version: integer version (the directory name).
        path: the version directory.
        signature_defs: {name: SignatureDef proto} read from saved_model.pb,
            as GetModelMetadata returns them.
    """

    def __init__(self, version, path, loaded, signature_defs):
        self.version = version
        self.path = path
        self.loaded = loaded
        self.signature_defs = signature_defs
        self._signatures = {
            name: Signature(name, function) for name, function in loaded.signatures.items()
        }

    @classmethod
    def load(cls, path, version):
        """Loads the SavedModel at `path`; raises OSError/ValueError if unreadable."""
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        with open(os.path.join(path, SAVED_MODEL_FILE), "rb") as f:
            saved_model = saved_model_pb2.SavedModel.FromString(f.read())
        if not saved_model.meta_graphs:
            raise ValueError(f"{path}: saved_model.pb holds no MetaGraph")
        signature_defs = dict(saved_model.meta_graphs[0].signature_def)
        loaded = tf.saved_model.load(path)
        if not loaded.signatures:
            raise ValueError(f"{path}: the SavedModel has no signatures")
        return cls(version, path, loaded, signature_defs)

    @property
    def signature_names(self):
        return sorted(self._signatures)

    def signature(self, name):
        """The Signature called `name`; FailedPrecondition if there is none."""
        try:
            return self._signatures[name]
        except KeyError:
            raise errors.FailedPrecondition(
                f'serving signature key "{name}" not found; the model has {self.signature_names}'
            ) from None

    def validate(self, signature_name, inputs):
        """Checks names, dtypes and shapes of a request; returns its batch size.

        Raises:
            FailedPrecondition: unknown signature.
            InvalidArgument: missing or unknown input, wrong dtype or shape,
                inputs with different batch sizes, or an empty batch.
        """
        signature = self.signature(signature_name)
        expected = signature.inputs
        missing = sorted(set(expected) - set(inputs))
        unknown = sorted(set(inputs) - set(expected))
        if missing or unknown:
            raise errors.InvalidArgument(
                f"signature '{signature_name}' takes inputs {sorted(expected)}; "
                f"missing {missing}, unknown {unknown}"
            )
        batch_sizes = set()
        for name, spec in expected.items():
            array = inputs[name]
            _check_dtype(name, array, spec)
            _check_shape(name, array, spec)
            batch_sizes.add(array.shape[0])
        if len(batch_sizes) > 1:
            raise errors.InvalidArgument(f"inputs have different batch sizes {sorted(batch_sizes)}")
        batch_size = batch_sizes.pop()
        if batch_size == 0:
            raise errors.InvalidArgument("empty batch: the request holds no examples")
        return batch_size

    def batch_key(self, signature_name, inputs):
        """Requests with equal keys can share a model call."""
        shapes = tuple(sorted((name, array.shape[1:]) for name, array in inputs.items()))
        return (self.version, signature_name, shapes)

    def run(self, signature_name, requests):
        """Runs validated requests as one call; returns one output dict each.

        A request whose data the model rejects (bytes that are not an image)
        fails the call; then each request is run alone, so only the bad one
        fails and requests batched with it are still answered.

        Returns:
            A list, per request, of either {output name: NumPy array} or the
            ServingError that request ended in.
        """
        try:
            return self._run_together(signature_name, requests)
        except errors.InvalidArgument as error:
            if len(requests) == 1:
                return [error]
        results = []
        for request in requests:
            try:
                results.extend(self._run_together(signature_name, [request]))
            except errors.ServingError as error:
                results.append(error)
        return results

    def _run_together(self, signature_name, requests):
        import tensorflow as tf

        signature = self.signature(signature_name)
        sizes = [len(next(iter(request.values()))) for request in requests]
        feeds = {}
        for name, spec in signature.inputs.items():
            arrays = [request[name] for request in requests]
            joined = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
            feeds[name] = tf.constant(joined, dtype=spec.dtype)
        try:
            outputs = signature.function(**feeds)
        except tf.errors.InvalidArgumentError as error:
            raise errors.InvalidArgument(_first_line(error.message)) from None
        except tf.errors.OpError as error:
            raise errors.ServingError(f"model failed: {_first_line(error.message)}") from None
        outputs = {name: tensor.numpy() for name, tensor in outputs.items()}
        return split_outputs(outputs, sizes)

    def warmup(self):
        """Replays assets.extra/tf_serving_warmup_requests, as TF Serving does.

        Returns:
            The number of requests replayed (0 without a warmup file).

        Raises:
            ValueError: a record is not a PredictionLog with a PredictRequest,
                or the model fails on it.
        """
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        path = os.path.join(self.path, WARMUP_FILE)
        if not os.path.exists(path):
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(path):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if log.WhichOneof("log_type") != "predict_log":
                raise ValueError(f"{path}: record {count} is not a predict_log")
            request = log.predict_log.request
            signature_name = request.model_spec.signature_name or "serving_default"
            inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
            try:
                self.validate(signature_name, inputs)
                (result,) = self.run(signature_name, [inputs])
            except errors.ServingError as error:
                raise ValueError(f"{path}: warmup request {count} failed: {error}") from error
            if isinstance(result, errors.ServingError):
                raise ValueError(f"{path}: warmup request {count} failed: {result}")
            count += 1
        return count


def split_outputs(outputs, sizes):
    """Splits batched outputs into per-request dicts of `sizes` rows each.

    With `height` and `width` outputs present, outputs of rank >= 3 (maps
    padded to the largest image of the call) are cropped to the largest image
    of each request.
    """
    results, start = [], 0
    for size in sizes:
        part = {name: value[start : start + size] for name, value in outputs.items()}
        if all(name in part for name in SIZE_OUTPUTS):
            height, width = int(part["height"].max()), int(part["width"].max())
            for name, value in part.items():
                if value.ndim >= 3:
                    part[name] = value[:, :height, :width]
        results.append(part)
        start += size
    return results


def _check_dtype(name, array, spec):
    import tensorflow as tf

    if spec.dtype == tf.string:
        ok = array.dtype == object or array.dtype.kind == "S"
    else:
        ok = array.dtype == spec.dtype.as_numpy_dtype
    if not ok:
        raise errors.InvalidArgument(
            f"input '{name}' must be {spec.dtype.name}, got {_dtype_name(array.dtype)}"
        )


def _check_shape(name, array, spec):
    expected = spec.shape
    if array.ndim != expected.rank or not expected.is_compatible_with(array.shape):
        wanted = ["?" if d is None else d for d in expected.as_list()]
        raise errors.InvalidArgument(
            f"input '{name}' must have shape {wanted} (? = any), got {list(array.shape)}"
        )


def _dtype_name(dtype):
    return "string" if dtype == object or dtype.kind == "S" else dtype.name


def _first_line(message):
    """The line of a TF error message that says what went wrong.

    TF prefixes it with "Graph execution error:" and node/stack lines and
    suffixes node names; a client needs only the cause.
    """
    for line in str(message).splitlines():
        line = line.strip()
        if not line or _TF_NOISE.match(line):
            continue
        line = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", line)
        return re.sub(r"\s*\[Op:[^\]]*\]$", "", line)
    return "the model failed on this request"


_TF_NOISE = re.compile(r"^(Graph execution error:|Detected at node|<stack traces|\[\[|File \"|defined at)")
