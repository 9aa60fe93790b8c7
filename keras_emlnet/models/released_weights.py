"""The authors' released EML-NET checkpoints → one Keras `EMLNet` (and its two encoders).

`convert_released` is what `python -m keras_emlnet.convert_released` runs.
The official README ("Make a prediction") links three files, read by
`eval_combined.py`:
- `res_imagenet.pth`, `res_places.pth`: `{'state_dict': ResNet.state_dict()}`
  as `train_resnet.py` saves them (keys `conv1.weight`, `layer1.0.bn1.*`,
  `output0.0.weight`, `combined.1.running_var`, ...); the official loader also
  accepts DataParallel's `module.` prefix and a bare state dict;
- `res_decoder.pth`: `{'state_dict': Decoder.state_dict()}` (keys
  `img_model.<i>.0.weight`, `pla_model.<i>.1.running_mean`, `combined.0.bias`, ...).

Files are read by `torch_checkpoints.read_state_dict` (`torch.load(weights_only=True)`:
no code from the file runs; zip and legacy formats); every key must be
used and every expected key present, with the expected shape, or the error
names it. torch is imported only here, when converting: the converted
`.keras` needs none.
"""

import hashlib
import os

from keras_emlnet.atomic_files import atomic_path, write_json_atomic
from keras_emlnet.models import released
from keras_emlnet.models import torch_checkpoints

ENCODER_FILE = "{prefix}_encoder.keras"  # in --encoders_dir


def load_encoder_weights(encoder, state_dict, source):
    """Fills a `build_released_encoder` model from a released encoder state dict (`read_state_dict`)."""
    torch_checkpoints.assign_torch_weights(encoder, released.encoder_module_paths(encoder.tap_prefix), state_dict,
                                           source, what="the released EML-NET ResNet-50 encoder")


def load_decoder_weights(decoder, state_dict, source, *, prefixes=released.ENCODER_PREFIXES):
    """Fills a `build_released_decoder` model from the released decoder state dict."""
    torch_checkpoints.assign_torch_weights(decoder, released.decoder_module_paths(decoder.name, prefixes), state_dict,
                                           source, what="the released EML-NET decoder")


def convert_released(imagenet, places, decoder, out, *, encoders_dir=None, input_size=released.INPUT_SIZE):
    """Converts the three released checkpoints into one `.keras` EMLNet, written atomically.

    Args:
        imagenet, places, decoder: the checkpoint files (`res_imagenet.pth`,
            `res_places.pth`, `res_decoder.pth`).
        out: the `.keras` file to write (an `EMLNet`: `keras_emlnet.load_model`
            loads it, `predict_map` gives eval_combined.py's map). Next to it,
            `<out>.json` records the inputs (paths, SHA-256) and settings.
        encoders_dir: if set, also writes the two converted encoders there
            as `imagenet_encoder.keras` and `places_encoder.keras`.
        input_size: (H, W) of the model (the released 480x640 by default;
            other sizes for tests: the architecture is size-agnostic).

    Returns:
        The converted EMLNet.

    Raises:
        ImportError: torch is not installed.
        ValueError: a file that is not a readable checkpoint, refused code,
            a missing or unexpected key, or a shape mismatch (each names the
            file and the key); `out` not ending in `.keras`.
    """
    out = os.fspath(out)
    if not out.endswith(".keras"):
        raise ValueError(f"the output file must end in .keras, got {out}")
    sources = {"imagenet": os.fspath(imagenet), "places": os.fspath(places), "decoder": os.fspath(decoder)}
    for path in sources.values():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no checkpoint file {path!r}")
    # Read all three before building (a wrong file fails in seconds, not after the build).
    state_dicts = {role: torch_checkpoints.read_state_dict(path) for role, path in sources.items()}

    encoders = [released.build_released_encoder(prefix, input_size=input_size)
                for prefix in released.ENCODER_PREFIXES]
    for encoder in encoders:
        load_encoder_weights(encoder, state_dicts[encoder.tap_prefix], sources[encoder.tap_prefix])
    # Saved before the extractor shares (and freezes) their layers: an encoder
    # file must stay trainable (fine-tuning, training parity).
    encoder_files = []
    if encoders_dir is not None:
        os.makedirs(encoders_dir, exist_ok=True)
        for encoder in encoders:
            path = os.path.join(os.fspath(encoders_dir), ENCODER_FILE.format(prefix=encoder.tap_prefix))
            with atomic_path(path) as tmp:
                encoder.save(tmp)
            encoder_files.append(os.path.abspath(path))
    emlnet, _ = released.build_released_emlnet(encoders)
    load_decoder_weights(emlnet.decoder, state_dicts["decoder"], sources["decoder"])
    with atomic_path(out) as tmp:
        emlnet.save(tmp)
    write_json_atomic(f"{out}.json", {
        "command": "keras_emlnet.convert_released",
        "checkpoints": {role: {"path": os.path.abspath(path), "sha256": _sha256(path)}
                        for role, path in sources.items()},
        "model": os.path.abspath(out),
        "encoders": encoder_files,
        "input_size": list(emlnet.input_size),
        "resize_mode": emlnet.resize_mode,
        "output_mode": emlnet.output_mode,
        "blur_sigma": emlnet.blur_sigma,
    })
    return emlnet


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
