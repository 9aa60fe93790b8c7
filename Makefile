# Two commands on a fresh machine: `make test` and `make demo`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: test test-slow demo install bench bench-peer clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q --timeout=900 tests

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q tests

demo: $(STAMP)
	$(PY) -m train.demo $(DEMO_FLAGS)

bench: $(STAMP)
	for f in benchmarks/*.py; do case $$f in *peer_pytorch.py) ;; *) $(PY) $$f || exit 1;; esac; done

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
