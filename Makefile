# The two commands of the README, plus helpers. Each target installs what it needs first (scripts/setup.sh is
# idempotent: a stamp in the venv makes a second run instant).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench-gpu lint

setup:
	@bash scripts/setup.sh $(VENV)

demo: setup
	$(PY) -m pgocc check-kernels --config configs.base:base

test: setup
	$(PY) -m pytest tests -q

lint: setup
	@$(VENV)/bin/pip install -q ruff==0.17.6 2>&1 | grep -v "is ignored" || true
	$(VENV)/bin/ruff check pgocc kernels_triton reference tests bench configs
