# The two commands: `make demo` (the whole pipeline on synthetic data) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DATA := data/synthetic
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
	@echo "+ python download.py --synthetic=true --data_dir=$(DEMO_DATA)"
	@$(PY) download.py --synthetic=true --data_dir=$(DEMO_DATA)
	@echo "+ python preprocess_data.py --data_dir=$(DEMO_DATA)"
	@$(PY) preprocess_data.py --data_dir=$(DEMO_DATA)
	@echo "demo: stages 1-2 ran. Training, prediction and fusion (stages 3-5) are not in this version yet."

clean-demo:
	rm -rf $(DEMO_DATA)
