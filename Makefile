# Payment orchestration platform. `make local` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= $(CURDIR)/.data
PORT ?= 8000
SIMULATOR_PORT ?= 8100
export DATA_DIR PORT SIMULATOR_PORT
export PYTHONPATH := $(CURDIR)/chalice_app
PYTEST_ARGS ?=

.PHONY: help install local test test-unit clean package

help:
	@echo "make local    - run the whole platform on this machine (API :$(PORT), simulator :$(SIMULATOR_PORT))"
	@echo "make test     - run every test suite"
	@echo "make package  - build the Lambda deployment package with chalice package"
	@echo "make clean    - remove .venv and local data"

$(STAMP): requirements.txt requirements-dev.txt
	@echo "==> creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	@printf '#!/bin/sh\n# payctl: installed by make; reads DATA_DIR/PORT like the running stack.\n: "$${DATA_DIR:=%s}"\nexport DATA_DIR\nPYTHONPATH="%s$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s" -m chalicelib.cli "$$@"\n' \
		"$(CURDIR)/.data" "$(CURDIR)/chalice_app" "$(CURDIR)/$(BIN)/python" > $(BIN)/payctl
	@chmod +x $(BIN)/payctl
	@touch $@

install: $(STAMP)

local: install
	$(BIN)/python -m chalicelib.runtime.local

test: install
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

package: install
	cd chalice_app && AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} ../$(BIN)/chalice package --stage prod ../build/chalice

clean:
	rm -rf $(VENV) .data build
