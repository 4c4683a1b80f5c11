# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench screenshot clean

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
	$(VENV)/bin/python benchmarks/heldout_scale.py
	$(VENV)/bin/python benchmarks/stacked.py
	$(VENV)/bin/python benchmarks/demo_sweep.py

# The demo report's page as headless Chromium draws it (Debian: apt-get install chromium).
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser || command -v google-chrome)
screenshot: reports/demo/index.html
	@test -n "$(CHROMIUM)" || { echo "error: no chromium found; install it (Debian: apt-get install chromium) or set CHROMIUM=" >&2; exit 2; }
	$(CHROMIUM) --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
	  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$$(mktemp -d)" \
	  --window-size=1100,1500 --screenshot=reports/demo/screenshot.png "file://$(CURDIR)/reports/demo/index.html" 2>/dev/null
	@echo "reports/demo/screenshot.png: the top of reports/demo/index.html"

clean:
	rm -rf $(VENV) store data .pytest_cache
