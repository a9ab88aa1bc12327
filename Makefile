# The two commands: `make demo` (the whole pipeline on synthetic data) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: setup test demo clean-demo

setup: $(STAMP)

# Reinstalls only when a requirements file changes.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements-dev.txt
	touch $@

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) -m reid.demo

clean-demo:
	rm -rf data/synthetic checkpoints/demo outputs/demo
