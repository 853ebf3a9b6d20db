# One way to set up and run: `make demo`, `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The kernel tests run a second time compiled for a baseline x86-64 CPU (the portable kernels; the name
# alone would keep the host's features, by Numba's rule).
KERNEL_TESTS := tests/test_fast_kernels.py tests/test_layer_kernels.py tests/test_kernel_inputs.py \
                tests/test_execution.py tests/test_layout_build.py tests/test_kernel_cache.py tests/test_cpu_features.py \
                tests/test_kernel_calibration.py tests/test_recurrent_calls.py

.PHONY: test test-portable demo fuzz bench bench-quick hardware clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch/torchvision pinned to the pair that lies on this machine's disk (see README).
	$(PY) -m pip install --quiet -e '.[all]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile tests
	$(MAKE) test-portable

test-portable: $(STAMP)
	NUMBA_CPU_NAME=x86-64 NUMBA_CPU_FEATURES= $(PY) -m pytest -q -n 2 --dist loadfile $(KERNEL_TESTS)

demo: $(STAMP)
	$(PY) -m eie_runtime.demo

fuzz: $(STAMP)
	EIE_FUZZ_EXAMPLES=10000 $(PY) -m pytest -q -n 2 tests/fuzz

# Reports land in out/ (ignored by git): kernels.json/.png, kernels-quick.json/.png, hardware.md/.json/-*.png.
bench: $(STAMP)
	$(PY) -m bench.kernels --json out/kernels.json --plot out/kernels.png

bench-quick: $(STAMP)
	$(PY) -m bench.kernels --quick

hardware: $(STAMP)
	$(PY) -m bench.hardware --out out

# Compiled kernels live in __pycache__ folders beside their sources (or, where those are read-only, in
# the user's cache folder, which `eie cache clear` empties).
clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis out bench/out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
