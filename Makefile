# segfn_kit: every task is one command. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help
help: ## list the tasks
	@grep -hE '^[a-z][a-z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-16s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.PHONY: install
install: $(UV) ## create .venv from uv.lock (idempotent, fast when nothing changed)
	$(UV) sync --frozen --all-extras --python $(PYTHON)

.PHONY: install-inexact
install-inexact: $(UV) ## like install, but keeps packages you added to .venv yourself (lab, bench)
	$(UV) sync --frozen --inexact --all-extras --python $(PYTHON)

.PHONY: node
node: ## install Debian's Node.js and npm for the Mapping Kit tests when missing
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  elif command -v sudo >/dev/null; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  else echo "cannot install node: run 'apt-get install nodejs npm' as root"; exit 1; fi; \
	fi

.PHONY: browser
browser: ## install Debian's Chromium for the browser test when missing
	@if [ ! -x /usr/bin/chromium ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  elif command -v sudo >/dev/null; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "cannot install chromium: run 'apt-get install chromium' as root"; exit 1; fi; \
	fi

.PHONY: lab
lab: install-inexact ## set up and open JupyterLab on notebooks/
	$(VENV)/bin/jupyter lab notebooks/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: test
test: install browser node ## set up and run every test (unit, notebooks, browser, short reliability suite)
	$(PY) -m pytest

.PHONY: lint
lint: install ## ruff and mypy --strict on the package
	$(VENV)/bin/ruff check segfn_kit tests benchmarks
	$(VENV)/bin/mypy

.PHONY: bench
bench: install-inexact ## performance figures as ratios against same-process baselines
	$(PY) -m benchmarks

.PHONY: soak
soak: install ## the long reliability suite
	SEGFN_SOAK=1 $(PY) -m pytest tests/test_reliability.py -p no:cacheprovider -s

.PHONY: regen
regen: install ## regenerate the golden files of exported handlers
	$(PY) -m tests.golden.regen

.PHONY: lock
lock: $(UV) ## refresh uv.lock and environment.yml after changing pyproject.toml
	$(UV) lock
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	$(PY) -m tests.test_environment --write

.PHONY: clean
clean: ## remove the environments and build output
	rm -rf $(VENV) $(TOOLS) build .pytest_cache
