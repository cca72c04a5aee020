# pyioso: every target installs what it needs (project venv from exact pins) on first use.
SHELL := /bin/bash
VENV  ?= .venv
BIN   := $(VENV)/bin
PY    := $(BIN)/python
STAMP := $(VENV)/.pyioso-installed

LAYER ?= resnet50_l3
NET   ?= resnet50

.PHONY: help venv test test-full golden layers cost clean

help:
	@echo "make golden LAYER=$(LAYER)  golden integer layer + its cost row (main job)"
	@echo "make test                    the test suite (what CI runs)"
	@echo "make test-full               the test suite including slow tests"
	@echo "make layers NET=...          list a network's conv/FC layers"
	@echo "make cost NET=...            integer-op cost table (paper Table 5 rule)"

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml scripts/setup_venv.sh
	scripts/setup_venv.sh $(VENV)
	@touch $@

venv: $(STAMP)

golden: $(STAMP)
	$(BIN)/pyioso golden --layer $(LAYER)

layers: $(STAMP)
	$(BIN)/pyioso layers --net $(NET)

cost: $(STAMP)
	$(BIN)/pyioso cost --net $(NET)

test: $(STAMP)
	$(BIN)/pytest -m "not slow"

test-full: $(STAMP)
	$(BIN)/pytest

clean:
	rm -rf build
