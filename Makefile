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
# WORKERS / THREADS: the local executor's runs at once and torch threads per run (benchmark, eval)
WORKERS ?=
THREADS ?=
# SET="a.b=c d.e=f": config overrides for benchmark / eval; it reaches python through the
# environment (HARNESS_SET, expanded by the shell inside double quotes), never spliced into a line
SET ?=
export HARNESS_SET = $(SET)
RETRY_FAILED ?=
RESULTS ?= results
OUT ?= $(RESULTS)/demo

EVAL_MODELS ?= t3bench
# The alignment judge of `make eval` (empty = the metric set's default, GPT-4 at api.openai.com):
# JUDGE_URL=http://localhost:8000/v1 JUDGE_MODEL=Qwen/Qwen2.5-7B-Instruct for a local OpenAI-compatible
# server (vLLM, llama.cpp), JUDGE_KEY_ENV = the variable holding its key; JUDGE_TEMPLATES = a folder of
# other judge texts (default: T3Bench's own, prompts/t3bench/judge); EVAL_SOURCE=mesh scores exported meshes.
JUDGE_URL ?=
JUDGE_MODEL ?=
JUDGE_KEY_ENV ?=
JUDGE_TEMPLATES ?=
EVAL_SOURCE ?=

# Recipes read these from the environment, quoted ("$$VAR", or $${VAR:+--flag "$$VAR"} when optional):
# a value is one argument to python, never shell source (a ' or ; in a prompt path stays text).
export METHOD MODELS PROMPTS SEEDS EXECUTOR LIMIT STEPS JOB RESULTS OUT EVAL_MODELS WORKERS THREADS
export JUDGE_URL JUDGE_MODEL JUDGE_KEY_ENV JUDGE_TEMPLATES EVAL_SOURCE

.PHONY: plan help install demo benchmark status eval report test test-fast perf weights weights-eval methods toyworld-train clean-demo gsplat gpu-check

help:
	@echo "make demo     ToyBench on CPU: 5 methods on the self-trained ToyWorld prior, scored and reported (~10 min)"
	@echo "make demo SMOKE=1   the tiny-model smoke job instead (whole real-model pipeline, random weights)"
	@echo "make benchmark METHOD=anchords-ipa-finetune   one method over the 300 T3Bench prompts"
	@echo "make benchmark JOB=jobs/paper-table1.yaml EXECUTOR=slurm   a job file (several methods)"
	@echo "               variables: PROMPTS SEEDS=0,1,2 MODELS EXECUTOR=local|ray|slurm LIMIT STEPS RESULTS WORKERS THREADS"
	@echo "               SET=\"a.b=c d.e=f\" (config overrides, also for eval) RETRY_FAILED=1"
	@echo "make plan JOB=jobs/paper-table1.yaml   GPU-hours of a job (measured step times, else a FLOP lower bound)"
	@echo "make status [JOB=paper-table1]   done / running / failed / pending per method and category"
	@echo "make eval JOB=paper-table1 [EVAL_MODELS=t3bench]   score the job's finished runs (resumable)"
	@echo "               judge: JUDGE_URL=http://localhost:8000/v1 JUDGE_MODEL=... [JUDGE_KEY_ENV=...]; EVAL_SOURCE=mesh"
	@echo "make report JOB=paper-table1   scores.parquet, report.md/.html, figures (no GPU needed); FROM_SCORES=1: from a committed scores.parquet"
	@echo "make test     run the test suite on CPU"
	@echo "make perf     speed benchmarks (writes results/perf/)"
	@echo "make gsplat   build gsplat's CUDA extension once into TORCH_EXTENSIONS_DIR (default .cache/torch_extensions)"
	@echo "make gpu-check   the first-GPU acceptance run (<= 8 min on one H100/H200): writes results/perf/*_cuda.json"
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
		$${WORKERS:+--workers "$$WORKERS"} $${THREADS:+--threads "$$THREADS"} \
		--results "$$RESULTS" $(if $(FORCE),--force) $(if $(DRY_RUN),--dry-run) \
		$${HARNESS_SET:+--sets "$$HARNESS_SET"} $(if $(RETRY_FAILED),--retry-failed)

# GPU-hours of a job's generation, from measured step times (else a labelled FLOP lower bound)
plan: $(STAMP)
	@test -n "$$JOB$$METHOD" || { echo "make plan: give JOB=jobs/<file>.yaml or METHOD=<method>" >&2; exit 2; }
	$(PY) -m harness.cost $${JOB:+--job "$$JOB"} $${METHOD:+--method "$$METHOD"} \
		$${PROMPTS:+--prompts "$$PROMPTS"} $${SEEDS:+--seeds "$$SEEDS"} $${MODELS:+--models "$$MODELS"} \
		$${LIMIT:+--limit "$$LIMIT"} $${STEPS:+--steps "$$STEPS"}

status: $(STAMP)
	$(PY) -m harness status $${JOB:+"$$JOB"} --results "$$RESULTS"

eval: $(STAMP)
	@test -n "$$JOB" || { echo "make eval: give JOB=<job name or file>" >&2; exit 2; }
	$(PY) -m harness eval "$$JOB" --models "$$EVAL_MODELS" --results "$$RESULTS" \
		$${JUDGE_URL:+--set alignment.judge.kind=openai --set "alignment.judge.base_url=$$JUDGE_URL"} \
		$${JUDGE_MODEL:+--set "alignment.judge.model=$$JUDGE_MODEL"} \
		$${JUDGE_KEY_ENV:+--set "alignment.judge.api_key_env=$$JUDGE_KEY_ENV"} \
		$${JUDGE_TEMPLATES:+--set "alignment.judge.templates=$$JUDGE_TEMPLATES"} \
		$${EVAL_SOURCE:+--set "source=$$EVAL_SOURCE"} \
		$${EXECUTOR:+--executor "$$EXECUTOR"} $(if $(FORCE),--force) \
		$${WORKERS:+--workers "$$WORKERS"} $${THREADS:+--threads "$$THREADS"} \
		$${HARNESS_SET:+--sets "$$HARNESS_SET"} $(if $(RETRY_FAILED),--retry-failed)

report: $(STAMP)
	@test -n "$$JOB" || { echo "make report: give JOB=<job name or file>" >&2; exit 2; }
	$(PY) -m harness report "$$JOB" --results "$$RESULTS" $(if $(FROM_SCORES),--from-scores) $(if $(REPLACE_SCORES),--replace-scores)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

perf: $(STAMP)
	$(PY) tests/perf/run_all.py

# gsplat compiles its CUDA code once into a folder every run (and node) then loads it from; it
# names what is missing (nvcc, a CUDA matching torch's, TORCH_CUDA_ARCH_LIST) in seconds.
gsplat: $(STAMP)
	$(PY) -m generators.render.gsplat_build

# One prepared GPU run in stages (see tests/perf/gpu_check.py); fails in seconds without a GPU.
gpu-check: $(STAMP)
	$(PY) tests/perf/gpu_check.py

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
