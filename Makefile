# voxgate: `make demo` and `make test` set everything up on a fresh machine, then run.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.voxgate-setup
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
DEMO_LANG ?= en  # `make demo DEMO_LANG=ur`: the Urdu flow

.PHONY: setup demo test test-fast bench clean

$(STAMP): pyproject.toml requirements/constraints.txt scripts/setup.sh
	bash scripts/setup.sh

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/voxgate demo --lang $(DEMO_LANG)

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(PY) scripts/bench_render.py

clean:
	rm -rf $(VENV) voxgate-data .pytest_cache
