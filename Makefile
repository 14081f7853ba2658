# Override on the command line, e.g. `make setup TORCH_SPEC=torch==2.14.1`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
DEMO_DIR ?= demo

.PHONY: setup test demo bench clean

setup:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test,synth,metrics,serve]"
	@$(BIN)/digit-denoise --version

test:
	$(BIN)/python -m pytest -q

demo:
	$(BIN)/python -m digit_denoise.demo --out $(DEMO_DIR)

bench:
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
