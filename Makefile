# Runbook executor — developer and operator entry points.
#   make demo   install, bring the lab up, deploy a broken release that rolls itself back, print the report
#   make test   install, start the lab, run the whole suite (unit + lab integration)
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
RUNBOOK := $(VENV)/bin/runbook
APT_PACKAGES := docker.io debootstrap busybox-static gcc libc6-dev postgresql-client openssh-client rsync curl iproute2 chromium ca-certificates cron
export RUNBOOK_STATE_DIR ?= $(CURDIR)/.state

.PHONY: help install apt venv lab lab-down demo test unit integration drill bench lint docs clean

help:
	@echo "make demo | test | unit | integration | drill | bench | lint | docs | lab | lab-down | install"

install: apt venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "install needs root for apt packages:$$missing" >&2; exit 1; fi; \
	  echo "installing apt packages:$$missing"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@echo "installing the runner and its tools into $(VENV) (first time: a few minutes)"
	@$(PY) -m pip install -q -e '.[dev]'
	@touch $@

lab: install
	$(RUNBOOK) lab up

lab-down:
	$(RUNBOOK) lab down

demo: lab
	@bash lab/demo.sh

unit: install
	$(VENV)/bin/pytest -q tests/unit

integration: lab
	$(VENV)/bin/pytest -q tests/integration

test: lab
	$(VENV)/bin/pytest -q -rs -p no:cacheprovider --durations=25 tests

# Every scenario with a molecule.yml, one at a time (`runbook drill` waits for the lab's in-use lock: the lab is
# shared with the lab tests), each recorded in history; all of them run, then docs/drills.md is written from their
# results and the ones that failed are named.
DRILL_RESULTS ?= $(RUNBOOK_STATE_DIR)/drills
drill: install
	@rm -rf "$(DRILL_RESULTS)"; mkdir -p "$(DRILL_RESULTS)"; failed=""; \
	for f in molecule/*/molecule.yml; do s=$$(basename "$$(dirname "$$f")"); \
	  echo "=== drill $$s"; \
	  $(RUNBOOK) drill "$$s" --results "$(DRILL_RESULTS)" || failed="$$failed $$s"; \
	done; \
	$(PY) -m runner.devtools.drills_table --results "$(DRILL_RESULTS)" --output docs/drills.md; \
	if [ -n "$$failed" ]; then echo "drills failed:$$failed" >&2; exit 1; fi; echo "every drill passed"

bench: lab
	$(PY) -m bench

lint: install
	$(VENV)/bin/ruff check runner tests bench
	$(VENV)/bin/mypy
	$(PY) -m runner.devtools.sizes
	ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/runner/collections $(VENV)/bin/ansible-lint --profile production roles

docs: install
	$(PY) -m runner.devtools.docs

clean:
	rm -rf .state out build *.egg-info
