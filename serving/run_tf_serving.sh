#!/usr/bin/env bash
# Serves exports/emlnet with the official TF Serving docker image (needs docker;
# cannot run on the project machines, which is why serving/server/server.py exists).
#
#   bash serving/run_tf_serving.sh            # gRPC on 8500, REST on 8501
#   TF_SERVING_IMAGE=tensorflow/serving:2.21.0-gpu bash serving/run_tf_serving.sh
#
# Export first:  python -m serving.export --model runs/emlnet/emlnet.keras \
#                    --export_base exports/emlnet --version 1 --max_batch_size 8
# (8: the max_batch_size of serving/batching_parameters.txt, so precision auto
# is measured at the batch sizes this server runs.)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${TF_SERVING_IMAGE:-tensorflow/serving:2.21.0}"
EXPORT_BASE="${EXPORT_BASE:-$PWD/exports/emlnet}"
test -d "$EXPORT_BASE" || { echo "no export at $EXPORT_BASE; run serving.export first" >&2; exit 1; }
# Ports are published on 127.0.0.1 only, like serving.server's default --host.
exec docker run --rm --name emlnet-serving \
  -p 127.0.0.1:8500:8500 -p 127.0.0.1:8501:8501 \
  -v "$EXPORT_BASE:/models/emlnet:ro" \
  -v "$PWD/serving/models.config:/config/models.config:ro" \
  -v "$PWD/serving/batching_parameters.txt:/config/batching_parameters.txt:ro" \
  "$IMAGE" \
  --model_config_file=/config/models.config \
  --enable_batching=true \
  --batching_parameters_file=/config/batching_parameters.txt \
  --file_system_poll_wait_seconds=1
