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

.PHONY: help install local test test-unit clean package synth plan deploy-region checkov topic-admin-zip

help:
	@echo "make local    - run the whole platform on this machine (API :$(PORT), simulator :$(SIMULATOR_PORT))"
	@echo "make local REGIONS=2 - two regions (APIs :$(PORT) and the next port), replicated, with leases"
	@echo "make local-aws - the same on Tansu (Kafka) + a moto server (DynamoDB, KMS) on loopback"
	@echo "make test     - run every test suite"
	@echo "make bench    - the user's path first (make local's stack + payctl demo: N=2000 payments, then RATE=50/s"
	@echo "                for DURATION=30 s), then the pipeline (PIPELINE_N=20000, AWS_N=30) and the per-payment cost:"
	@echo "                store rows, worker CPU, DynamoDB and Kafka requests, AWS \$$ per million. MODE=user|embedded|aws-local"
	@echo "make simulate - seeded whole-pipeline simulation: SEEDS=N (default 500) [START=S], or SEED=s to replay one"
	@echo "make package  - build the Lambda deployment package with chalice package"
	@echo "make synth    - synthesize the Terraform JSON (global + one stack per region) into infra/cdktf.out/"
	@echo "make plan REGION=r          - synth, then terraform plan on that region's stack (needs terraform)"
	@echo "make deploy-region REGION=r - package, synth, terraform apply global then the region (needs terraform)"
	@echo "make checkov  - scan the synthesized stacks with checkov (own venv: .venv-checkov)"
	@echo "make clean    - remove .venv and local data"

$(STAMP): requirements.txt requirements-dev.txt requirements-infra.txt
	@echo "==> creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -r requirements-infra.txt
	@touch $@

install: $(STAMP) $(BIN)/payctl

# payctl: its own target, so a checkout whose venv predates a change here gets the new script.
$(BIN)/payctl: $(STAMP) Makefile
	@printf '#!/bin/sh\n# payctl: installed by make; reads DATA_DIR/PORT like the running stack.\n: "$${DATA_DIR:=%s}"\n: "$${TENANTS_FILE:=%s}"\nexport DATA_DIR TENANTS_FILE\nPYTHONPATH="%s$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s" -m payctl.cli "$$@"\n' \
		"$(CURDIR)/.data" "$(CURDIR)/infra/tenants.json" "$(CURDIR)/chalice_app" "$(CURDIR)/$(BIN)/python" > $(BIN)/payctl
	@chmod +x $(BIN)/payctl

# REGIONS=2: two regions active/active with a replicator and shared leases (laptop/regions.py)
local: install
	$(BIN)/python -m $(if $(filter 2,$(REGIONS)),laptop.regions,laptop.stack)

# The same stack on the AWS protocols: Tansu (Kafka) and a moto server (DynamoDB, KMS) on loopback;
# KAFKA_BOOTSTRAP_SERVERS and AWS_ENDPOINT_URL pick the ports (defaults 9092 and 4566).
.PHONY: local-aws
local-aws: install
	PLATFORM_MODE=aws-local $(BIN)/python -m laptop.stack

# Seeded whole-pipeline simulation (tests/fault/simulation.py, VOPR-style): checks I1-I4 per seed.
.PHONY: simulate
simulate: install
	$(BIN)/python -m tests.fault.simulation $(if $(SEED),--seed $(SEED),--seeds $(or $(SEEDS),500) --start $(or $(START),0))

test: install
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

# bench/, README "Performance". First the user's path: `make local`'s stack on free ports in a temporary
# data dir, driven by `payctl demo --count N` (throughput) and `--rate RATE --duration DURATION` (latency).
# Then the pipeline: PIPELINE_N payments embedded (throughput, latency at half load, 1 -> 2 workers, store
# rows and worker CPU per payment), AWS_N over Tansu + moto (DynamoDB and Kafka requests per payment, the
# AWS bill of a million payments). MODE=user stops after the user's path, MODE=embedded before aws-local.
.PHONY: bench
bench: install
	$(BIN)/python -m bench --demo-n $(or $(N),2000) --demo-rate $(or $(RATE),50) --demo-duration $(or $(DURATION),30) \
		--n $(or $(PIPELINE_N),20000) --aws-n $(or $(AWS_N),30) --mode $(or $(MODE),aws-local) $(BENCH_ARGS)

test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

package: install
	cd chalice_app && AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} ../$(BIN)/chalice package --stage prod ../build/chalice

clean:
	rm -rf $(VENV) .data build

# ---- infrastructure (infra/, CDK Terrain; README "Infrastructure") ----
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
TF_OUT := infra/cdktf.out/stacks
TERRAFORM ?= terraform
# terraform init that reports "cannot download the providers" in one line (no network here)
TF_INIT := $(CURDIR)/infra/terraform_init.sh
REGIONS = $(shell $(BIN)/python -c 'import json; print(" ".join(json.load(open("infra/config.json"))["regions"]))')
define require_terraform
	@command -v $(TERRAFORM) >/dev/null 2>&1 || { echo "error: no terraform binary on PATH: install Terraform >= 1.5 (https://developer.hashicorp.com/terraform/install) to plan or deploy; 'make synth' works without it" >&2; exit 127; }
endef
define check_region
	@$(BIN)/python -m infra.main --check-region "$(REGION)"
endef

synth: install
	$(BIN)/python -m infra.main

plan: install
	$(check_region)
	$(require_terraform)
	@$(MAKE) --no-print-directory synth
	@cd $(TF_OUT)/region-$(REGION) && $(TF_INIT) $(TERRAFORM)
	cd $(TF_OUT)/region-$(REGION) && $(TERRAFORM) plan -input=false

deploy-region: install
	$(check_region)
	$(require_terraform)
	@$(MAKE) --no-print-directory package topic-admin-zip synth
	@cd $(TF_OUT)/global && $(TF_INIT) $(TERRAFORM)
	cd $(TF_OUT)/global && $(TERRAFORM) apply -input=false
	@cd $(TF_OUT)/region-$(REGION) && $(TF_INIT) $(TERRAFORM)
	cd $(TF_OUT)/region-$(REGION) && $(TERRAFORM) apply -input=false

# The topic admin Lambda (infra/lambda_src/topic_admin) with its two pure-Python deps.
topic-admin-zip: install
	rm -rf build/topic-admin && mkdir -p build/topic-admin
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --target build/topic-admin -r infra/lambda_src/topic_admin/requirements.txt
	cp infra/lambda_src/topic_admin/handler.py build/topic-admin/
	$(BIN)/python -c 'import shutil; shutil.make_archive("build/topic-admin", "zip", "build/topic-admin")'

# checkov pins botocore/packaging versions that conflict with requirements.txt: own venv.
$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@touch $@

checkov: $(CHECKOV_STAMP) synth
	cd infra && ../$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml -d cdktf.out/stacks
