# The two commands: `make demo` (the whole pipeline on synthetic data) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: setup lint test demo clean-demo

setup: $(STAMP)

# The project and its dev extra, editable; reinstalled only when its metadata changes.
$(STAMP): pyproject.toml requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	touch $@

lint: setup
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

demo: setup
	$(PY) demo.py

clean-demo:
	rm -rf data/synthetic checkpoints/demo outputs/demo
