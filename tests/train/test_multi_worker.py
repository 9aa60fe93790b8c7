"""Multi-worker training proven on two processes (`--strategy multi_worker`, TF_CONFIG on 127.0.0.1).

Each test trains one stage three ways on generated SALICON data with the
tiny test models: one process (the reference), then two workers whose
second is SIGKILLed in epoch 1 (the cluster is then stopped, as a job
scheduler does), then the same two commands again, which resume from the
chief's epoch backup. Both workers must end with identical weights, equal
to the reference (the same global batches: the data order is a function of
(seed, epoch), and each worker's half-batch gradients are all-reduced), and
only the chief may write the run folder. CPU collectives run over gRPC.
"""

import json
import os
import signal
import socket

import numpy as np
import pytest

from keras_emlnet import testing
from keras_emlnet.data import generate_dataset
from tests.train import killable_cli

SETUP = """
import numpy as np
from keras_emlnet import testing
from keras_emlnet.models import backbones
backbones.BACKBONES["tiny"] = testing.tiny_backbone_spec("tiny")
_weights_out = os.environ.get("WEIGHTS_OUT")
if _weights_out:  # each process's final weights, for the test to compare
    def _dump(self, logs=None):
        np.savez(_weights_out, *[np.asarray(w) for w in self.model.get_weights()])
    callbacks.StepCounter.on_train_end = _dump  # every training run has a StepCounter
"""
INPUT = "32x48"
COMMON = ["--dataset", "salicon", "--input_size", INPUT, "--batch_size", "4", "--epochs", "2",
          "--lr_decay_epochs", "1", "--seed", "3"]
TIMEOUT = 300


@pytest.fixture(scope="module")
def salicon_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("salicon")
    generate_dataset("salicon", str(root), 16, seed=0, image_size=(48, 64))  # 8 train (2 global batches), 4 val
    return str(root)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def weights(path):
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def run_cluster(module, args, tmp_path, tag, kill_worker_1_at=0, beside=None):
    """Runs `module args` as worker 0 (chief) and worker 1 of a local cluster; returns (returncodes, logs).

    `beside`: another process started at the same time, waited for too (its return code comes last).
    """
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    procs, logs = [], []
    for index in range(2):
        scratch = tmp_path / f"{tag}_tmp{index}"  # where a non-chief writes its scratch copy
        scratch.mkdir()
        logs.append(tmp_path / f"{tag}_worker{index}.log")
        env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "WEIGHTS_OUT": str(tmp_path / f"{tag}_worker{index}.npz"), "TMPDIR": str(scratch)}
        procs.append(killable_cli.start_cli(module, [*args, "--strategy", "multi_worker"], setup=SETUP, env=env,
                                            kill_at_batch=kill_worker_1_at if index == 1 else 0,
                                            log_path=logs[-1]))
    try:
        if kill_worker_1_at:
            procs[1].wait(TIMEOUT)
            procs[0].send_signal(signal.SIGKILL)  # the scheduler stops the whole job
        codes = [proc.wait(TIMEOUT) for proc in procs + ([beside] if beside else [])]
    finally:
        for proc in procs + ([beside] if beside else []):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return codes, [log.read_text() for log in logs]


def check_two_workers_match_one_process(module, args, tmp_path, final_file):
    # The one-process reference runs beside the first (killed) cluster run.
    reference = tmp_path / "reference"
    single = killable_cli.start_cli(module, [*args, "--workdir", str(reference)], setup=SETUP,
                                    env={"WEIGHTS_OUT": str(tmp_path / "reference.npz")},
                                    log_path=tmp_path / "reference.log")
    workdir = tmp_path / "cluster"
    codes, logs = run_cluster(module, [*args, "--workdir", str(workdir)], tmp_path, "killed", kill_worker_1_at=3,
                              beside=single)
    assert codes[2] == 0, (tmp_path / "reference.log").read_text()[-3000:]
    assert codes[:2] == [-signal.SIGKILL, -signal.SIGKILL], [log[-3000:] for log in logs]
    assert json.loads((workdir / "backup" / "state.json").read_text())["epoch"] == 1  # 2 steps an epoch
    assert not (workdir / final_file).exists()

    codes, logs = run_cluster(module, [*args, "--workdir", str(workdir)], tmp_path, "resumed")
    assert codes == [0, 0], [log[-3000:] for log in logs]
    assert "resumed from epoch 1" in logs[0] and "resumed from epoch 1" in logs[1]
    recorded = json.loads((workdir / "config.json").read_text())
    assert recorded["runtime"]["strategy"] == "CollectiveAllReduceStrategy"  # MultiWorkerMirroredStrategy's class
    assert recorded["runtime"]["num_replicas"] == 2 and recorded["train"]["distribution"] == "multi_worker"

    chief, other, alone = (weights(tmp_path / name) for name in ("resumed_worker0.npz", "resumed_worker1.npz",
                                                                  "reference.npz"))
    assert len(chief) == len(alone)
    for a, b, ref in zip(chief, other, alone):
        np.testing.assert_array_equal(a, b)  # the workers hold one model
        # = one process on the same global batches, to float32 rounding: synchronized BatchNorm's
        # moments are E[x^2] - E[x]^2 over the replicas (Keras), the one device's a two-pass mean
        # (differences ~5e-6 after 4 steps; per-replica BN statistics differed by ~2.5e-2).
        np.testing.assert_allclose(a, ref, rtol=1e-4, atol=2e-5)
    # Only the chief wrote the run folder (the same files as the one-process run);
    # the other worker's scratch copies are gone.
    assert sorted(os.listdir(workdir)) == sorted(os.listdir(reference))
    assert list(os.scandir(tmp_path / "resumed_tmp1")) == []
    return workdir


def test_encoder_trains_on_two_workers_and_resumes(salicon_dir, tmp_path):
    args = ["--backbone", "tiny", "--data_dir", salicon_dir, *COMMON]
    check_two_workers_match_one_process("train.encoder", args, tmp_path, "encoder.keras")


def test_decoder_trains_on_two_workers_and_resumes(salicon_dir, tmp_path):
    encoders = []
    for prefix, seed in (("tiny_a", 1), ("tiny_b", 2)):
        path = tmp_path / f"{prefix}.keras"
        testing.tiny_encoder(prefix, input_size=(32, 48), seed=seed).save(path)
        encoders.append(str(path))
    args = ["--encoders", ",".join(encoders), "--data_dir", salicon_dir, *COMMON]
    check_two_workers_match_one_process("train.decoder", args, tmp_path, "emlnet.keras")
