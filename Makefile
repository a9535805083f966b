# Every target installs what it needs first, into .venv, from the pinned requirements.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OPENCV := $(shell grep -i '^opencv-contrib-python-headless==' requirements.txt)
DEMO_DIR ?= demo_output
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help install browser test test-fast demo bench lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	@# albumentations pulls opencv-python-headless, retina-face the contrib build: keep one cv2
	$(PY) -m pip uninstall -y -q opencv-python-headless opencv-python || true
	$(PY) -m pip install -q --no-deps --force-reinstall $(OPENCV)
	touch $@

install: $(VENV)/.installed  ## create .venv with the pinned dependencies

browser:  ## Debian's chromium for the browser test (the test skips, saying why, without it)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  >/dev/null) ; } || echo "chromium could not be installed: the browser test will be skipped"

test: install browser  ## run every test, slow end-to-end ones included
	$(PY) -m pytest -q

test-fast: install  ## run the fast tests only
	$(PY) -m pytest -q -m "not slow"

demo: install  ## build a sample dataset and run every stage on it
	$(PY) -m dfpipe.sample.demo --output $(DEMO_DIR)

bench: install  ## run the benchmarks (JSON on stdout; uses ../shared/data)
	$(PY) bench/bench_preprocess.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_app.py
	$(PY) bench/bench_sbi.py
	$(PY) bench/bench_onnx.py
	$(PY) bench/bench_startup.py

lint: install  ## ruff
	$(VENV)/bin/ruff check .

clean:  ## remove outputs (not the virtual environment)
	rm -rf $(DEMO_DIR) evaluation_results .pytest_cache
