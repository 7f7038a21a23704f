# Two commands on a fresh machine:  make demo  |  make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test setup clean

setup: $(VENV)/.installed

# torch is pinned to the CPU build that this platform ships; pip (not uv/poetry) finds it locally.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 -e '.[test,mnist,features,diffusers,onnx]'
	@if $(BIN)/pip list 2>/dev/null | grep -qi nvidia; then echo "error: a CUDA build of torch was installed; install torch==2.13.0 first"; exit 1; fi
	touch $@

demo: setup
	$(BIN)/difflab demo --out demo_out

test: setup
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) demo_out .pytest_cache
