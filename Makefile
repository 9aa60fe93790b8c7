# Two commands on a fresh machine: `make test` and `make demo`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: test test-slow demo install bench bench-smoke bench-peer clean

$(STAMP): requirements.txt requirements-dev.txt requirements-beam.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt -r requirements-beam.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q --timeout=900 tests

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q tests

demo: $(STAMP)
	$(PY) -m train.demo $(DEMO_FLAGS)

# Full size (480x640, NASNetLarge + DenseNet-161, 100 metric pairs): minutes to hours on a CPU, meant for a GPU.
bench: $(STAMP)
	$(PY) benchmarks/data_throughput.py
	$(PY) benchmarks/encoder_learning_rate.py
	$(PY) benchmarks/encoder_memory.py
	$(PY) benchmarks/inference_speed.py
	$(PY) benchmarks/metrics_speed.py
	$(PY) benchmarks/serving_load.py

# Every benchmark at a small size (tiny test backbones, small maps, few requests): checks they run, a few
# minutes on a CPU; its figures say nothing about full-size speed.
bench-smoke: $(STAMP)
	$(PY) benchmarks/data_throughput.py --num_images 16 --image_size 120x160 --input_size 96x128 --batch_size 4 \
	    --rounds 1
	$(PY) benchmarks/encoder_learning_rate.py --backbone tiny --input_size 48x64 --num_images 16 --epochs 2 \
	    --batch_size 4 --decay_epoch 1
	$(PY) benchmarks/encoder_memory.py --encoder tiny --joint tiny,tiny --input_size 48x64 --steps 1 \
	    --precisions float32
	$(PY) benchmarks/inference_speed.py --backbones tiny --input_size 48x64 --batch_sizes 1,2 --iterations 2
	$(PY) benchmarks/metrics_speed.py --num_pairs 5 --map_size 120x160
	$(PY) benchmarks/serving_load.py --clients 2 --requests_per_client 3 --duration_s 30

# This project beside PyTorch (benchmarks/peer_pytorch.py), in its own venv.
PEER_VENV := .venv-peer
PEER_STAMP := $(PEER_VENV)/.installed
$(PEER_STAMP): requirements-peer.txt
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q -r requirements-peer.txt
	touch $(PEER_STAMP)

bench-peer: $(STAMP) $(PEER_STAMP)
	$(PEER_VENV)/bin/python benchmarks/peer_pytorch.py --ours_python $(PY) $(PEER_FLAGS)

clean:
	rm -rf $(VENV) $(PEER_VENV) build *.egg-info .pytest_cache
