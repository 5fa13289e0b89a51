# Week-6 knowledge distillation: every documented entry point. Each target builds or updates .venv
# from requirements.txt by itself, then echoes what it runs.
#
#   make reference [PROFILE=cpu|gpu]   the reference experiment -> runs/<profile>/
#   make test                          the whole test suite (offline, CPU only)
#   make help                          every target

PROFILE ?= cpu
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JOBS ?= 2
ARGS ?=
SUBMISSIONS ?= submissions
OUT ?= grades
SOURCE ?= complaints.csv
export PYTHONUNBUFFERED := 1
NB_SOURCE := solutions/week6_distillation/distillation.ipynb
NB_RELEASE := assignments/week6_distillation/distillation.ipynb
# nbgrader runs `alembic` by name: the venv's bin folder goes first on PATH.
NBGRADER := PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/nbgrader

.PHONY: help venv test data data-full teacher publish-teacher reference full-size-data full-size bench traffic \
	gpu-check release validate grade gradescope student-kit similarity clean-venv

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is \
	needed ($(PYTHON) is $$($(PYTHON) -V 2>&1)): install it, or name it with make PYTHON=/path/to/python3.11"; exit 1; }
	@echo "+ $(PYTHON) -m venv $(VENV) && pip install -r requirements.txt -e ."
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(STAMP)  ## create or update .venv from the pinned requirements

test: $(STAMP)  ## run the whole test suite
	$(PY) -m pytest -n $(JOBS) --dist loadgroup tests

data: $(STAMP)  ## rebuild data/cfpb/{train,validation,test}.parquet from the embedded CFPB copy
	$(PY) -m kdcourse.data_build

data-full: $(STAMP)  ## rebuild the splits from the full CFPB export: make data-full SOURCE=complaints.csv
	$(PY) -m kdcourse.data_build --format cfpb-export --source $(SOURCE) --out_dir data/cfpb_full

teacher: $(STAMP)  ## fine-tune the profile's teacher -> checkpoints/<profile>/teacher [ARGS=--overwrite]
	$(PY) -m kdcourse.teacher --profile $(PROFILE) $(ARGS)

publish-teacher: $(STAMP)  ## the profile's teacher + model card -> dist/teacher-<profile>/ [ARGS=--push REPO_ID]
	$(PY) -m kdcourse.publish --profile $(PROFILE) $(ARGS)

reference: $(STAMP)  ## the whole reference experiment -> runs/<profile>/ (teacher trained if missing) [ARGS=...]
	$(PY) solutions/reference/run_reference.py --profile $(PROFILE) $(ARGS)

full-size-data: $(STAMP)  ## tokenizer + token ids for make full-size, before a GPU call -> .cache/full_size/<profile>/
	$(PY) -m kdcourse.perf.full_size --profile $(PROFILE) --prepare_only true

# As gpu-check: no venv step, the GPU image's own torch runs it (the data comes from make full-size-data).
full-size:  ## the pipeline stage by stage: time, tokens/s, memory, finite losses -> runs/<profile>/full_size/
	PYTHONPATH=src $(if $(wildcard $(PY)),$(PY),python3) -m kdcourse.perf.full_size --profile $(PROFILE) $(ARGS)

bench: $(STAMP)  ## throughput, MFU and memory of the distillation step vs a HF Trainer baseline [ARGS=...]
	$(PY) -m kdcourse.perf.bench --profile $(PROFILE) $(ARGS)

traffic: $(STAMP)  ## bytes the compiled step's fused kernels move, and the MFU ceiling that leaves [ARGS=...]
	$(PY) -m kdcourse.perf.traffic --profile $(PROFILE) $(ARGS)

# No venv step: the GPU image's own torch (often offline, and not the CPU wheel pinned here) runs it.
gpu-check:  ## on a GPU: attention/packing checks and the benchmark matrix -> runs/gpu/session/
	PY=$(if $(wildcard $(PY)),$(abspath $(PY)),python3) bash solutions/reference/gpu_session.sh

release: $(STAMP)  ## regenerate assignments/ (student notebook) from solutions/ with nbgrader
	@mkdir -p .cache
	$(PY) -m kdcourse.notebook strip-outputs $(NB_SOURCE)
	$(NBGRADER) generate_assignment week6_distillation --force --CourseDirectory.db_url=sqlite:///.cache/release.db
	$(PY) -m kdcourse.notebook strip-outputs $(NB_RELEASE)

# nbgrader validate exits 0 even when tests fail, so its verdict is read from its output.
validate: $(STAMP)  ## the source passes its visible tests, the release fails them (smoke profile)
	@mkdir -p .cache
	KD_PROFILE=smoke $(NBGRADER) validate --Execute.timeout=600 $(NB_SOURCE) | tee .cache/validate-source.txt
	@grep -q "^Success! Your notebook passes all the tests" .cache/validate-source.txt
	KD_PROFILE=smoke $(NBGRADER) validate --invert --Execute.timeout=600 $(NB_RELEASE) | tee .cache/validate-release.txt
	@grep -q "^Success! The notebook does not pass any tests" .cache/validate-release.txt

grade: $(STAMP)  ## grade a folder of submissions: make grade SUBMISSIONS=dir OUT=dir [JOBS=n] [ARGS=...]
	$(PY) -m autograder.grade $(SUBMISSIONS) --out_dir $(OUT) --jobs $(JOBS) $(ARGS)

gradescope: $(STAMP)  ## Gradescope's autograder bundle -> dist/gradescope/autograder.zip
	$(PY) -m autograder.gradescope build --out_dir dist/gradescope

student-kit: $(STAMP)  ## what students get -> dist/student/, dist/week6-student.zip, dist/kdcourse-*.whl (hub)
	$(PY) -m autograder.student_kit --out_dir dist

similarity: $(STAMP)  ## how alike every pair's graded cells are: make similarity SUBMISSIONS=dir OUT=dir
	$(PY) -m autograder.similarity $(SUBMISSIONS) --out_dir $(OUT)

clean-venv:  ## remove .venv (the next target rebuilds it)
	rm -rf $(VENV)
