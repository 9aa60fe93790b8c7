"""Settings for a process that only runs inference (the server, batch scoring).

oneDNN reorders a convolution's weights into its blocked layout on every call
unless it may assume they never change; `TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1`
lets it reorder each filter once and keep it. Measured here (2-core Zen 4,
NASNet + DenseNet-161 at 480x640, batch 1, 8 calls a setting, load 1.4–1.6):
1.216 s with it, 1.261 s without (3.5 %). It is process-wide and read once,
so a process that trains (or changes weights after first running them) must
never set it: only inference-only entry points call
`mark_inference_only_process`.
"""

import os

FROZEN_WEIGHTS_ENV = "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS"


def mark_inference_only_process():
    """Lets oneDNN cache reordered weights in this process, unless the user set the variable (e.g. to 0).

    Call it before the process runs its first convolution (TensorFlow reads
    the variable once, then); returns the value in effect.
    """
    return os.environ.setdefault(FROZEN_WEIGHTS_ENV, "1")
