# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/scaler demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[dev,bench]'
	$(VENV)/bin/python benchmarks/train_throughput.py
	$(VENV)/bin/python benchmarks/data_build.py
	$(VENV)/bin/python benchmarks/plan_scale.py
	$(VENV)/bin/python benchmarks/ray_overhead.py
	$(VENV)/bin/python benchmarks/fit_speed.py
	$(VENV)/bin/python benchmarks/extrapolation.py
	$(VENV)/bin/python benchmarks/stacked.py
	$(VENV)/bin/python benchmarks/demo_sweep.py

clean:
	rm -rf $(VENV) store data .pytest_cache
