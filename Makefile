# Fresh machine: `make run` trains the default model on the bundled Last.fm-2K data,
# `make test` runs the test suite, `make docs` builds the documentation site into site/. All create
# .venv/ when it is missing and refill it whenever the dependency list in setup.cfg changes (the stamp
# file carries its hash).
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
DEPS_HASH := $(shell sha256sum setup.cfg | cut -c1-16)
STAMP := $(VENV)/.deps-$(DEPS_HASH)
DOCS_STAMP := $(VENV)/.docs-$(DEPS_HASH)
ARGS ?=

.PHONY: venv run test docs clean-venv

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

# the docs extra (mkdocs, mkdocs-material, mkdocstrings) on top of the venv; --strict: a broken link, a
# missing page or an unreadable docstring fails the build (NO_MKDOCS_2_WARNING: mkdocs-material's banner)
$(DOCS_STAMP): $(STAMP)
	$(VPY) -m pip install --quiet -e ".[docs]"
	@rm -f $(VENV)/.docs-*
	@touch $@

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VPY) -m mkdocs build --strict --site-dir site

clean-venv:
	rm -rf $(VENV)
