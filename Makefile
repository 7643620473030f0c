# The two commands a newcomer runs (see README.md):
#   make demo   - the main job, `qaccel demo`, on the simulated accelerator
#   make test   - the full test suite
# Each creates .venv and installs qaccel with every extra from PyPI on first use; it needs
# only Python 3.11+, g++ and make (and perl, which every Debian/Ubuntu system has).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.qaccel-installed
# Parallel pytest workers; CI machines have 2 cores.
JOBS   ?= 2
# Simulator builds are cached per configuration; in a checkout, keep them beside it.
export QACCEL_CACHE_DIR ?= $(CURDIR)/sim_build

.PHONY: demo test doctor bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "qaccel needs Python 3.11 or newer; this is " + sys.version.split()[0] + " (set PYTHON=python3.11)")'
	@command -v g++ >/dev/null || { echo "g++ not found: install it (apt-get install g++)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all]'
	@touch $@

demo: $(STAMP)
	$(BIN)/qaccel demo

test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadgroup

doctor: $(STAMP)
	$(BIN)/qaccel doctor

bench: $(STAMP)
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) sim_build build *.egg-info
