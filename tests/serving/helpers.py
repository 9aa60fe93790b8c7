"""Shared pieces of the serving tests: a tiny exported EMLNet, images, processes."""

import os
import re
import subprocess
import sys
import threading
import time

import numpy as np

from tests.paths import REPO_ROOT  # noqa: E402  (re-exported for the serving tests)
INPUT_SHAPE = (32, 48, 3)
MODEL_NAME = "emlnet"


def tiny_model(output_mode="minmax", resize_mode="resize"):
    from keras_emlnet.testing import tiny_emlnet

    return tiny_emlnet(INPUT_SHAPE[:2], output_mode=output_mode, resize_mode=resize_mode)


def export_tiny(export_base, version=1, *, model=None, output_mode="minmax", resize_mode="resize"):
    """Exports a tiny EMLNet (in-process); returns (model, version_dir)."""
    from serving.export.export import export_saliency_model
    from serving.export.export import ExportConfig

    model = model or tiny_model(output_mode, resize_mode)
    config = ExportConfig(model="<in memory>", export_base=str(export_base), version=version,
                          model_name=MODEL_NAME)
    version_dir, _ = export_saliency_model(model, config)
    return model, version_dir


def distinct_images(count, *, seed=0, sizes=((32, 48), (40, 30), (25, 61))):
    """`count` seeded uint8 RGB images with a bright blob at a different place each."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        rows, cols = np.mgrid[0:h, 0:w]
        cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
        blob = np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * (0.12 * max(h, w)) ** 2))
        image = 40 + 200 * blob[..., None] * rng.uniform(0.5, 1.0, size=3) + rng.normal(0, 6, (h, w, 3))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


def write_image_collection(root, sizes, *, seed):
    """Random images under `root` ({name: (h, w)}; "e" as PNG, the rest JPEG, subfolders made),
    plus `garbage.jpg` (not an image) and `truncated.jpg` (half a JPEG): batch scoring's inputs."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, size in sizes.items():
        path = os.path.join(str(root), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pixels = rng.integers(0, 256, tuple(size) + (3,), dtype=np.uint8)
        Image.fromarray(pixels).save(path + (".png" if name == "e" else ".jpg"))
    with open(os.path.join(str(root), "garbage.jpg"), "wb") as f:
        f.write(b"this is not an image")
    encoded = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(encoded, format="JPEG")
    with open(os.path.join(str(root), "truncated.jpg"), "wb") as f:
        f.write(encoded.getvalue()[: len(encoded.getvalue()) // 2])
    return str(root)


def png_bytes(image):
    from serving.export.checks import encode_image

    return encode_image(image, "PNG")


def python_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_module(args, *, timeout=180):
    """Runs `python -m ...` in the repo; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, env=python_env(),
                          capture_output=True, text=True, timeout=timeout)


class ServerProcess:
    """`python -m serving.server` in a subprocess; ports parsed from its ready line."""

    _READY = re.compile(r"ready: gRPC \S+:(-?\d+|None) REST \S+:(-?\d+|None)")

    def __init__(self, args, *, timeout=120):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving.server", *args], cwd=REPO_ROOT, env=python_env(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines = []
        self._ready = threading.Event()
        self.grpc_port = self.rest_port = None
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(timeout) or self.grpc_port is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.lines[-40:]))

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)
            match = self._READY.search(line)
            if match:
                self.grpc_port, self.rest_port = (int(v) if v != "None" else None for v in match.groups())
                self._ready.set()
        self._ready.set()  # exited

    def stop(self, timeout=30):
        """SIGTERM, then wait; returns the exit code (kills after `timeout`)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_for(predicate, *, timeout=30.0, interval=0.1):
    """Polls `predicate` until truthy; returns its value or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


def png_bomb(height, width):
    """A valid greyscale PNG of height x width black pixels, a few hundred KB (a decompression bomb).

    Decoded as RGB it takes 3 x height x width bytes (1.2 GB at 20000 x 20000).
    """
    import struct
    import zlib

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    # All-zero rows: one block of rows is deflated once and repeated (after a
    # full flush each copy is byte-identical), so a 20000 x 20000 bomb takes
    # milliseconds to build; adler32 of n zero bytes is (n mod 65521) << 16 | 1.
    row = b"\0" * (width + 1)  # filter byte + one byte per pixel
    rows_per_block = max(1, min(height, (1 << 22) // len(row)))
    full, rest = divmod(height, rows_per_block)
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = raw.compress(row * rows_per_block) + raw.flush(zlib.Z_FULL_FLUSH)
    tail = raw.compress(row * rest) + raw.flush()
    adler = ((len(row) * height) % 65521) << 16 | 1
    stream = b"\x78\xda" + block * full + tail + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def jpeg_with_orientation(image, orientation):
    """JPEG bytes of `image` (uint8 RGB) with an EXIF orientation tag (stored as is, shown turned)."""
    import io

    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def gif_animation_bomb(height, width, frames):
    """A GIF of `frames` full frames (black / white alternating): ~4.7 KB a frame at 2000 x 2000,
    3 x height x width bytes a frame once decoded."""
    import io

    from PIL import Image

    black, white = Image.new("L", (width, height), 0), Image.new("L", (width, height), 255)
    sequence = [black, white] * (frames // 2)
    buffer = io.BytesIO()
    sequence[0].save(buffer, format="GIF", save_all=True, append_images=sequence[1:], duration=10, optimize=False)
    return buffer.getvalue()
