# Two commands on a fresh machine: `make test` and `make demo`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: test test-slow demo install bench bench-smoke clean

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
	$(PY) benchmarks/data_throughput.py --backbone tiny --num_images 16 --image_size 48x64 --input_size 48x64 \
	    --batch_size 4 --pipeline_epochs 2 --train_steps 2
	$(PY) benchmarks/encoder_learning_rate.py --backbone tiny --input_size 48x64 --num_images 16 --epochs 2 \
	    --batch_size 4 --decay_epoch 1
	$(PY) benchmarks/encoder_memory.py --encoder tiny --joint tiny,tiny --input_size 48x64 --steps 1 \
	    --precisions float32
	$(PY) benchmarks/inference_speed.py --backbones tiny --input_size 48x64 --batch_sizes 1,2 --iterations 2
	$(PY) benchmarks/metrics_speed.py --num_pairs 5 --map_size 120x160
	$(PY) benchmarks/serving_load.py --clients 2 --requests_per_client 3 --duration_s 30

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
