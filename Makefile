# Two commands do everything on a fresh machine:
#   make run [DATA=~/photos] [ARGS="--k 12"]   venv + install + cluster the demo (or DATA), print the report path
#   make test                                  venv + install + the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
DEMO   ?= demo-data/digits
DATA   ?=
ARGS   ?=

.PHONY: run test install browser bench clean bytecode

# What `make run` needs: the package and the web app (the README's tour ends with `imgcluster
# serve`). The test tools, Ray (which brings pandas), ONNX and OpenCV come with the dev extras only:
# the first `make run` installs in about half the time, and without pandas every command starts
# 0.3-0.6 s sooner (scikit-learn imports pandas at start whenever it is installed).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU wheel first: an unpinned torch would pull gigabytes of CUDA packages.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[web]'
	touch $(STAMP)

# Tests, benchmarks and the docs site: every extra the test suite exercises.
$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(DEV_STAMP)

install: $(DEV_STAMP)

# pip compiles an installed package's modules, but not an editable install's source tree; where
# PYTHONDONTWRITEBYTECODE is set (as on this machine) every command then compiled the ~90 modules it
# imports again (0.2 s a process). Kept up to date on each run (0.1 s when nothing changed); a
# source tree it cannot write to only costs that time back.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q src >/dev/null 2>&1 || \
		echo "could not compile src/ to bytecode (read-only?): each command will compile what it imports"

run: $(STAMP) bytecode
ifeq ($(strip $(DATA)),)
	$(BIN)/imgcluster demo $(DEMO)
	$(BIN)/imgcluster cluster $(DEMO)/images $(ARGS)
else
	$(BIN)/imgcluster cluster "$(DATA)" $(ARGS)
endif

# The report test drives a real Chromium (Debian's package; Playwright cannot download its own here).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed: the browser test will be skipped (apt-get install chromium)"

test: $(DEV_STAMP) browser bytecode
	$(BIN)/python -m pytest

bench: $(DEV_STAMP)
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) demo-data build *.egg-info
