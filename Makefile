# drivewm: `make demo` and `make test` each do all of their own set-up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# This machine serves the CPU build of torch 2.13.0 from disk; elsewhere set TORCH_SPEC=torch (or your own build).
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: demo test install clean browser

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,tensorboard,convert]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/drivewm demo --out demo_out

# The report test opens the HTML in a real browser: install Debian's chromium where apt can.
browser:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: $(VENV)/.installed browser
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo_out runs .pytest_cache
