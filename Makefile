# Switchboard developer commands. On a fresh machine, Python 3.11+ and make are the whole set-up:
# every target below creates (or reuses) the virtualenv in .venv it needs. `make lint` also needs
# node/npm, for buf. Run `make` or `make help` for the list.

PYTHON ?= python3
VENV ?= .venv
ARGS ?=
PYTEST_ARGS ?=
# Test processes (pytest-xdist): most tests wait on servers and sockets, so two processes on two
# cores finish in about 60% of the time of one. PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= auto

VENV_BIN := $(VENV)/bin
VENV_PYTHON := $(VENV_BIN)/python
# Written after a successful `pip install -e '.[dev]'`; the install re-runs when pyproject.toml
# is newer than it.
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# The deployment linters (hadolint, kubernetes-validate, checkov), apart from the project's venv.
LINT_VENV ?= .venv-lint
LINT_STAMP := $(LINT_VENV)/.installed
BUF := node_modules/.bin/buf
# Type-checked trees that exist (others may not have been written yet).
MYPY_PATHS := $(wildcard router workers benchmarks scripts)

PIP_FLAGS := --disable-pip-version-check
ifeq ($(CI),true)
PIP_FLAGS += --progress-bar off --no-input --quiet
endif

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

.PHONY: FORCE help venv node proto proto-check lint lint-ruff lint-mypy lint-buf test demo serve \
	bench clean distclean lint-docker lint-kubernetes protos-bundle

help: ## Show this list of targets
	@echo "Usage: make TARGET [ARGS='...'] [PYTHON=python3.12]"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

# --- environments -------------------------------------------------------------------------------

$(VENV_PYTHON):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "error: Switchboard needs Python 3.11 or newer; '$(PYTHON)' is" \
			"$$($(PYTHON) -c 'import platform; print(platform.python_version())' 2>/dev/null \
				|| echo missing)." \
			"Run with PYTHON=/path/to/python3.11 or newer." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# The editable install maps the top-level packages that exist when it runs, so it is redone when
# one appears (or goes): the stamp records which ones it saw.
TOP_PACKAGES := $(sort $(wildcard router workers benchmarks))
ifneq ($(TOP_PACKAGES),$(strip $(shell cat $(VENV_STAMP) 2>/dev/null)))
$(VENV_STAMP): FORCE
endif

$(VENV_STAMP): pyproject.toml | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install $(PIP_FLAGS) -e '.[dev]'
	@echo '$(TOP_PACKAGES)' > $@

FORCE:

venv: $(VENV_STAMP) ## Create .venv and install the project with its dev tools (when needed)

# --ignore-scripts: buf's postinstall only swaps its JS launcher for the binary; the launcher works.
$(NODE_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

node: $(NODE_STAMP) ## Install the Node tools (buf) into node_modules/ from package-lock.json

$(LINT_STAMP): deploy/lint-requirements.txt | $(VENV_PYTHON)
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install $(PIP_FLAGS) -r deploy/lint-requirements.txt
	@touch $@

# --- generated code -----------------------------------------------------------------------------

proto: $(VENV_STAMP) ## Regenerate router/_proto/ from protos/ (commit the result)
	$(VENV_PYTHON) scripts/gen_proto.py

proto-check: $(VENV_STAMP) ## Fail if router/_proto/ is stale with respect to protos/
	$(VENV_PYTHON) scripts/gen_proto.py --check

protos-bundle: $(VENV_STAMP) ## Write dist/switchboard-protos-<version>.tar.gz (API, health, reflection)
	$(VENV_PYTHON) scripts/protos_bundle.py

# --- checks -------------------------------------------------------------------------------------

lint: lint-ruff lint-mypy lint-buf lint-docker lint-kubernetes ## ruff, mypy, buf, hadolint, k8s

lint-ruff: $(VENV_STAMP)
	$(VENV_BIN)/ruff check .

lint-mypy: $(VENV_STAMP)
	$(VENV_BIN)/mypy $(MYPY_PATHS)

lint-buf: $(NODE_STAMP)
	$(BUF) lint

lint-docker: $(LINT_STAMP)
	$(LINT_VENV)/bin/hadolint Dockerfile

# deploy/kubernetes rendered (scripts/kustomize_lite.py), schema-validated, scanned by checkov.
lint-kubernetes: $(LINT_STAMP)
	$(LINT_VENV)/bin/python scripts/check_manifests.py

# node_modules: buf (the reflection test) and @grpc/grpc-js (examples/node, run by the tests).
test: $(VENV_STAMP) $(NODE_STAMP) proto-check ## Run the tests (soak runs marked slow are skipped)
	@rc=0; $(VENV_BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests (exit 5)." >&2; fi; \
	exit $$rc

# --- running ------------------------------------------------------------------------------------

demo: $(VENV_STAMP) ## Run the demo (make demo ARGS='...')
	$(VENV_BIN)/switchboard demo $(ARGS)

serve: $(VENV_STAMP) ## Run the server (make serve ARGS='--port 50051 ...')
	$(VENV_BIN)/switchboard serve $(ARGS)

bench: $(VENV_STAMP) ## Run the quick engine benchmark
	$(VENV_PYTHON) -m benchmarks.engine --quick

# --- housekeeping -------------------------------------------------------------------------------

clean: ## Remove caches and build artefacts (keeps .venv, node_modules and data/)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
	find . -path ./.venv -prune -o -path ./node_modules -prune -o -path ./.git -prune -o \
		\( -name __pycache__ -o -name '*.egg-info' \) -type d -print0 | xargs -0 rm -rf

distclean: clean ## Also remove .venv and node_modules
	rm -rf $(VENV) node_modules $(LINT_VENV)
