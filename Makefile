# marinade build / test entry points.
#
#   make venv     create .venv/py3X for every interpreter found, install -e '.[dev]'
#   make test     run pytest under every venv (PYTEST_ARGS passed through)
#   make demo     run examples/demo.py with the first interpreter's venv
#   make bench    run benchmarks/run_all.py with the 3.11 venv (JSON + docs/benchmarks.svg)
#                 and bench_stdlib.py (the table in docs/supported-types.md)
#   make lint     ruff check src tests benchmarks
#   make clean    remove .venv and caches
#
# Interpreters come from scripts/find-pythons.sh (one path per line);
# restrict them with e.g. `make test PY_VERSIONS=3.12`.

SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTEST_ARGS ?=
VENV_DIR    := .venv
export PY_VERSIONS

# Interpreter paths, in order (3.11, 3.12, 3.13 as found).
PYTHONS := $(shell sh scripts/find-pythons.sh)
ifeq ($(strip $(PYTHONS)),)
$(error no usable Python interpreter found by scripts/find-pythons.sh)
endif

# Tag for an interpreter path, e.g. py311.
py_tag = $(shell $(1) -c 'import sys; print("py%d%d" % sys.version_info[:2])')

TAGS       := $(foreach p,$(PYTHONS),$(call py_tag,$(p)))
FIRST_TAG  := $(firstword $(TAGS))
BENCH_TAG  := $(if $(filter py311,$(TAGS)),py311,$(FIRST_TAG))
STAMPS     := $(foreach t,$(TAGS),$(VENV_DIR)/$(t)/.installed)

# One stamp rule per interpreter: redone only when pyproject.toml changes.
define VENV_RULE
$(VENV_DIR)/$(1)/.installed: pyproject.toml
	@echo "==> venv $(1) ($(2))"
	@unset PYTHONPATH; \
	  $(2) -m venv $(VENV_DIR)/$(1) && \
	  $(VENV_DIR)/$(1)/bin/python -m pip install -q --upgrade pip && \
	  $(VENV_DIR)/$(1)/bin/python -m pip install -q -e '.[dev]' && \
	  touch $$@
endef
$(foreach p,$(PYTHONS),$(eval $(call VENV_RULE,$(call py_tag,$(p)),$(p))))

.PHONY: venv venv-first venv-bench test demo bench lint clean pythons

pythons:
	@printf '%s\n' $(PYTHONS)

venv: $(STAMPS)

venv-first: $(VENV_DIR)/$(FIRST_TAG)/.installed

venv-bench: $(VENV_DIR)/$(BENCH_TAG)/.installed

test: venv
	@unset PYTHONPATH; failed=""; \
	for t in $(TAGS); do \
	  py=$(VENV_DIR)/$$t/bin/python; \
	  echo "===== $$t: $$($$py -c 'import sys; print(sys.version.split()[0], sys.executable)') ====="; \
	  $$py -m pytest $(PYTEST_ARGS) || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "pytest FAILED on:$$failed"; exit 1; fi; \
	echo "pytest passed on: $(TAGS)"

demo: venv-first
	@unset PYTHONPATH; $(VENV_DIR)/$(FIRST_TAG)/bin/python examples/demo.py

bench: venv-bench
	@unset PYTHONPATH; $(VENV_DIR)/$(BENCH_TAG)/bin/python benchmarks/run_all.py \
	  --json benchmarks/results.json && \
	  $(VENV_DIR)/$(BENCH_TAG)/bin/python benchmarks/chart.py benchmarks/results.json && \
	  $(VENV_DIR)/$(BENCH_TAG)/bin/python benchmarks/bench_stdlib.py --write-docs

lint: venv-first
	$(VENV_DIR)/$(FIRST_TAG)/bin/ruff check src tests $(wildcard benchmarks)

clean:
	rm -rf $(VENV_DIR) build dist .pytest_cache .ruff_cache .hypothesis src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
