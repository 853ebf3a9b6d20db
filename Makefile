# One way to set up and run: `make demo`, `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo fuzz bench bench-quick hardware clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch/torchvision pinned to the pair that lies on this machine's disk (see README).
	$(PY) -m pip install --quiet -e '.[all]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile tests

demo: $(STAMP)
	$(PY) -m eie_runtime.demo

fuzz: $(STAMP)
	EIE_FUZZ_EXAMPLES=10000 $(PY) -m pytest -q -n 2 tests/fuzz

bench: $(STAMP)
	$(PY) -m bench.kernels --json bench/out/kernels.json --plot bench/out/kernels.png

bench-quick: $(STAMP)
	$(PY) -m bench.kernels --quick

hardware: $(STAMP)
	$(PY) -m bench.hardware

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
