# Fresh machine: `make run` trains the default model on the bundled Last.fm-2K data,
# `make test` runs the test suite. Both create .venv/ when it is missing and refill it
# whenever the dependency list in setup.cfg changes (the stamp file carries its hash).
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
DEPS_HASH := $(shell sha256sum setup.cfg | cut -c1-16)
STAMP := $(VENV)/.deps-$(DEPS_HASH)
ARGS ?=

.PHONY: venv run test bench clean-venv

venv: $(STAMP)

$(STAMP):
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade "pip>=24"
	$(VPY) -m pip install --quiet -e ".[test]"
	@# Python 3.12+: RecBole's ray pin has no wheel there; setup.cfg lists RecBole's other requirements
	@if $(VPY) -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
		$(VPY) -m pip install --quiet --no-deps "recbole==1.2.1"; fi
	@rm -f $(VENV)/.deps-*
	@touch $@

run: $(STAMP)
	$(VPY) run_recbole_mamex.py $(ARGS)

test: $(STAMP)
	$(VPY) -m pytest -q tests $(ARGS)

clean-venv:
	rm -rf $(VENV)
