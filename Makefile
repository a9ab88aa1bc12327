# The two commands: `make demo` (the whole pipeline on synthetic data) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: setup lint test demo clean-demo boxmot-env

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
	rm -rf data/synthetic data/synthetic_clip_crops data/synthetic_clips checkpoints/demo outputs/demo

# BoxMOT (AGPL-3.0; pins pandas<3, opencv-python<5) in an environment of its own, for bench/link_tracks.py.
boxmot-env: .venv-boxmot/bin/python

.venv-boxmot/bin/python:
	$(PYTHON) -m venv .venv-boxmot
	.venv-boxmot/bin/pip install torch==2.14.1 torchvision==0.29.1 boxmot==25.0.0
