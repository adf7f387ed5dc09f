# Two set-up commands for a fresh machine: `make demo` and `make test` (each installs what it needs).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export PYTHONPATH := $(CURDIR)

# Variables of `make benchmark` / `make status` (empty = the job file's or the method's default);
# `make demo` runs ToyBench on CPU (jobs/toybench-demo.yaml: generate, score, report), or one METHOD
# of it; `make demo SMOKE=1` the tiny-model smoke job (jobs/smoke.yaml).
METHOD ?=
SMOKE ?=
MODELS ?=
PROMPTS ?=
SEEDS ?=
EXECUTOR ?=
LIMIT ?=
STEPS ?=
JOB ?=
RESULTS ?= results
OUT ?= $(RESULTS)/demo

EVAL_MODELS ?= t3bench
# Recipes read these from the environment, quoted ("$$VAR", or $${VAR:+--flag "$$VAR"} when optional):
# a value is one argument to python, never shell source (a ' or ; in a prompt path stays text).
export METHOD MODELS PROMPTS SEEDS EXECUTOR LIMIT STEPS JOB RESULTS OUT EVAL_MODELS

.PHONY: help install demo benchmark status eval report test test-fast perf weights weights-eval methods toyworld-train clean-demo

help:
	@echo "make demo     ToyBench on CPU: 5 methods on the self-trained ToyWorld prior, scored and reported (~10 min)"
	@echo "make demo SMOKE=1   the tiny-model smoke job instead (whole real-model pipeline, random weights)"
	@echo "make benchmark METHOD=anchords-ipa-finetune   one method over the 300 T3Bench prompts"
	@echo "make benchmark JOB=jobs/paper-table1.yaml EXECUTOR=slurm   a job file (several methods)"
	@echo "               variables: PROMPTS SEEDS=0,1,2 MODELS EXECUTOR=local|ray|slurm LIMIT STEPS RESULTS"
	@echo "make status [JOB=paper-table1]   done / running / failed / pending per method and category"
	@echo "make eval JOB=paper-table1 [EVAL_MODELS=t3bench]   score the job's finished runs (resumable)"
	@echo "make report JOB=paper-table1   scores.parquet, report.md/.html, figures (no GPU needed)"
	@echo "make test     run the test suite on CPU"
	@echo "make perf     speed benchmarks (writes results/perf/)"
	@echo "make weights MODELS=sd15   fetch a real model set from the Hugging Face hub"
	@echo "make weights-eval          fetch the evaluation models (ImageReward, BLIP-2, CLIP, judge)"
	@echo "make methods  list the methods"
	@echo "make toyworld-train   retrain every ToyWorld network from scratch (hours on CPU; resumes)"

# The virtual environment. torch/torchvision are pinned by constraints.txt: other pairs break
# torchvision here, and open_clip would otherwise pull a newer torch.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m harness demo --out "$$OUT" $(if $(SMOKE),--smoke) $${METHOD:+--method "$$METHOD"} $${MODELS:+--models "$$MODELS"} \
		$${PROMPTS:+--suite "$$PROMPTS"} $${STEPS:+--steps "$$STEPS"}

# Prompts and settings travel as single arguments to python (never through a shell of ours).
benchmark: $(STAMP)
	@test -n "$$JOB$$METHOD" || { echo "make benchmark: give METHOD=<method> or JOB=jobs/<file>.yaml" >&2; exit 2; }
	$(PY) -m harness benchmark $${JOB:+--job "$$JOB"} $${METHOD:+--method "$$METHOD"} \
		$${PROMPTS:+--prompts "$$PROMPTS"} $${SEEDS:+--seeds "$$SEEDS"} $${MODELS:+--models "$$MODELS"} \
		$${EXECUTOR:+--executor "$$EXECUTOR"} $${LIMIT:+--limit "$$LIMIT"} $${STEPS:+--steps "$$STEPS"} \
		--results "$$RESULTS" $(if $(FORCE),--force) $(if $(DRY_RUN),--dry-run)

status: $(STAMP)
	$(PY) -m harness status $${JOB:+"$$JOB"} --results "$$RESULTS"

eval: $(STAMP)
	@test -n "$$JOB" || { echo "make eval: give JOB=<job name or file>" >&2; exit 2; }
	$(PY) -m harness eval "$$JOB" --models "$$EVAL_MODELS" --results "$$RESULTS" \
		$${EXECUTOR:+--executor "$$EXECUTOR"} $(if $(FORCE),--force)

report: $(STAMP)
	@test -n "$$JOB" || { echo "make report: give JOB=<job name or file>" >&2; exit 2; }
	$(PY) -m harness report "$$JOB" --results "$$RESULTS"

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

perf: $(STAMP)
	$(PY) tests/perf/run_all.py

weights: $(STAMP)
	@test -n "$$MODELS" || { echo "make weights: give MODELS=sd15 or MODELS=sd21" >&2; exit 2; }
	HF_HUB_OFFLINE=0 $(PY) -m generators.models.weights "$$MODELS"

weights-eval: $(STAMP)
	HF_HUB_OFFLINE=0 $(PY) -m metrics weights "$$EVAL_MODELS"

methods: $(STAMP)
	$(PY) -m generators methods

toyworld-train: $(STAMP)
	$(PY) -m generators.toyworld.train_all --threads 1

clean-demo:
	rm -rf -- "$${RESULTS:?}/demo"
