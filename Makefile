# Every target bootstraps .venv on a fresh machine (only the package index is needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## Train configs/default.py (beta-TCVAE on procedural dSprites, offline) into runs/demo.
demo: $(STAMP)
	$(PY) -m vae_jax.main --config=configs/default.py --workdir=runs/demo

## The whole test suite on up to 4 worker processes (one per core; several forced CPU
## devices are set up by the tests that need them). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --maxprocesses=4 --dist worksteal tests

## Benchmarks print figures; torch's CPU build is installed for the PyTorch baseline.
bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[test,bench]"
	$(PY) benchmarks/train_throughput.py --torch-retain-memory
	$(PY) benchmarks/evaluation.py
	$(PY) benchmarks/input_pipeline.py

clean:
	rm -rf $(VENV) runs
