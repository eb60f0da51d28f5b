# One-command entry points.  `make all`: set up and run the whole study (runs -> figures -> paper);
# `make test`: set up and run the test suite.  Both create ./.venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed first, pinned; TORCH_SPEC goes to pip as it is, so it may carry pip options
# (an --index-url for the CPU or a CUDA build: see README).
TORCH_SPEC ?= torch==2.13.0
PROFILE ?= full

.PHONY: all setup study figures readme paper test clean-venv

all: study figures paper

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dask,torchode,sklearn,test]"
	touch $@

study: setup
	$(BIN)/study run-all --profile $(PROFILE)

figures: setup
	$(BIN)/study figures
	$(MAKE) readme

# README's findings and performance blocks are generated (paper/generated/*.md); this copies them in.
readme: setup
	$(BIN)/python -m study.report.findings README.md paper/generated/findings.md paper/generated/performance.md

paper: setup
	$(BIN)/study paper

test: setup
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
