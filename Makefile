# Two set-up commands for a fresh machine: `make demo` and `make test` (each installs what it needs).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export PYTHONPATH := $(CURDIR)

METHOD ?= sds
MODELS ?= tiny
PROMPTS ?= demo
RESULTS ?= results
SEEDS ?= 0
STEPS ?=
OUT ?= $(RESULTS)/demo

.PHONY: help install demo test test-fast perf weights methods clean-demo

help:
	@echo "make demo     run the demo job (sds on the embedded tiny models, CPU, one prompt per T3Bench category)"
	@echo "make test     run the test suite on CPU"
	@echo "make perf     speed benchmarks (writes results/perf/)"
	@echo "make weights MODELS=sd15   fetch a real model set from the Hugging Face hub"
	@echo "make methods  list the methods"

# The virtual environment. torch/torchvision are pinned by constraints.txt: other pairs break
# torchvision here, and open_clip would otherwise pull a newer torch.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m harness demo --method $(METHOD) --models $(MODELS) --suite $(PROMPTS) --out $(OUT) $(if $(STEPS),--steps $(STEPS))

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

perf: $(STAMP)
	$(PY) tests/perf/run_all.py

weights: $(STAMP)
	HF_HUB_OFFLINE=0 $(PY) -m generators.models.weights $(MODELS)

methods: $(STAMP)
	$(PY) -m generators methods

clean-demo:
	rm -rf $(RESULTS)/demo
