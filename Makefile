# prunecli — set-up, demo and tests. `make demo` and `make test` work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-slow lint bench gpu-smoke clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch/torchvision first, pinned: these releases install from the machine's local files
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev,export,tensorboard]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(MAKE) -C recipes/demo PRUNECLI=$(abspath $(BIN))/prunecli PYTHON=$(abspath $(BIN))/python

test: $(STAMP)
	$(BIN)/pytest

test-slow: $(STAMP)
	$(BIN)/pytest -m slow

lint: $(STAMP)
	$(BIN)/ruff check prunecli tests bench

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf runs recipes/demo/runs

# the CUDA paths (bf16, channels_last, torch.compile, NCCL torchrun, prune, profile) in < 5 min; needs a GPU
gpu-smoke: $(STAMP)
	PY=$(BIN)/python TORCHRUN=$(BIN)/torchrun bash bench/gpu_smoke.sh
