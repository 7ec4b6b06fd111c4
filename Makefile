# popdb-ops: the two commands an operator needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export POPDB_LAB_ID ?= 0
export ANSIBLE_CACHE_PLUGIN_CONNECTION := $(CURDIR)/.cache/facts-lab$(POPDB_LAB_ID)
LAB := $(CURDIR)/bin/lab
SIZE ?= small
# Molecule scenarios run by `make test`, in this order (molecule/shared is not a scenario).
SCENARIOS ?= $(shell cat molecule/SCENARIOS 2>/dev/null)
# Debian packages the controller needs (lab, PostgreSQL for engine tests, scanners, browser).
APT_PACKAGES := debootstrap systemd-container iproute2 nftables bridge-utils apt-cacher-ng \
  openssh-client postgresql-15 postgresql-client-15 nmap chromium fonts-wqy-microhei \
  rsync curl ca-certificates tcpdump iputils-ping

.PHONY: help setup apt venv wheelhouse lint pytest molecule test demo lab-build lab-up lab-down lab-status bench clean

help:
	@echo "make demo   - set up, bring up the $(SIZE) lab, run playbooks/site.yml against it"
	@echo "make test   - lint, pytest, Molecule scenarios on lab hosts"
	@echo "make lab-up|lab-down|lab-status [SIZE=small|full] [POPDB_LAB_ID=N]"

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "apt: installing $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.installed

setup: apt venv wheelhouse

# Wheels for the control node's job venv (Debian 12: CPython 3.11, x86_64), downloaded once here; the
# scheduler role pushes them and installs with pip --no-index (the control node never reaches PyPI).
WHEELHOUSE := .cache/wheelhouse
WHEEL_REQS := $(WHEELHOUSE)/requirements.txt
$(WHEEL_REQS): roles/scheduler/defaults/main.yml | $(VENV)/.installed
	mkdir -p $(WHEELHOUSE)
	$(PY) -c 'import yaml, sys; d = yaml.safe_load(open(sys.argv[1])); print(*d["scheduler_venv_requirements"], sep="\n")' \
	  roles/scheduler/defaults/main.yml > $@.tmp
	$(PY) -m pip download -q -d $(WHEELHOUSE) -r $@.tmp --only-binary=:all: --implementation cp --python-version 3.11 \
	  --abi cp311 --abi abi3 --abi none --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  --platform manylinux_2_28_x86_64
	mv $@.tmp $@

wheelhouse: $(WHEEL_REQS)

lint: venv
	yamllint -s .
	ruff check .
	ruff format --check .
	ansible-lint -q

pytest: setup
	pytest tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

molecule: setup
	@set -e; for s in $(SCENARIOS); do start=$$(date +%s); \
	  if molecule test -s $$s; then echo "=== molecule $$s passed in $$(( $$(date +%s) - start )) s"; \
	  else echo "=== molecule $$s FAILED after $$(( $$(date +%s) - start )) s"; exit 1; fi; done

test: lint pytest molecule

lab-build: setup
	$(LAB) build

lab-up: setup
	$(LAB) up --size $(SIZE) --id $(POPDB_LAB_ID)

lab-down:
	$(LAB) down --id $(POPDB_LAB_ID)

lab-status:
	$(LAB) status --id $(POPDB_LAB_ID)

demo: setup lab-up
	ansible-playbook playbooks/site.yml
	@echo "Outputs: out/ (reports: out/*/). Lab inventory: .cache/lab/$(POPDB_LAB_ID)/"

bench: setup
	@for b in bench/*/run.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: lab-down
	rm -rf .cache out
