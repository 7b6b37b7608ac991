# The course's two commands (see README):
#   make lab    install everything into .venv and open JupyterLab on the notebooks
#   make test   install everything (incl. test tools) and run the whole suite
# Installs are remembered by stamp files, so a second `make test` runs offline.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: lab test install install-dev build-notebooks budget bench browser-deps binder-resolve ci-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

lab: install
	$(BIN)/jupyter lab notebooks/

test: install-dev
	$(BIN)/python -m pytest -n 2 --dist loadfile --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg $(PYTEST_ARGS)

build-notebooks: install-dev
	$(BIN)/python tools/notebooks.py build

budget: install-dev
	$(BIN)/python tools/budget.py

bench: install-dev
	$(BIN)/python benchmarks/run.py

# Online steps that the offline suite relies on (.ci/run calls `make ci-deps` before `make test`):
# bertviz's JavaScript (require.js, d3, jQuery) from the npm registry for the browser test, and
# pip's resolution of binder/requirements.txt for the Binder test. Both land in artifacts/.
browser-deps: install-dev
	$(BIN)/python tests/browser/vendor.py

binder-resolve: install-dev
	$(BIN)/python tests/test_binder_colab.py resolve

ci-deps: browser-deps binder-resolve

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info artifacts
