# babyvlm: the two entry points are `make study` (the study and its report) and `make test`.
# Both create/refresh the virtual environment first and fetch the registry assets (a no-op when cached).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= default
STAMP := $(VENV)/.installed

.PHONY: study test test-cluster test-lmms lmms-venv assets venv clean-outputs lab slurm-packages

venv: $(STAMP)

$(STAMP): settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# pip byte-compiles on one core; compileall on every core does the same files in about a quarter less time (pip too
	@# leaves out the files that do not compile, e.g. Python-2 fixtures inside some packages: hence the `|| true`)
	$(BIN)/pip install --disable-pip-version-check -q --no-compile -e ".[dev]"
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	$(BIN)/python -m ipykernel install --sys-prefix --name babyvlm --display-name "babyvlm" >/dev/null
	touch $(STAMP)

assets: $(STAMP)
	$(BIN)/babyvlm assets fetch

study: assets
	$(BIN)/babyvlm study --profile $(PROFILE)

test: assets
	@# notebooks are the source: exporting them must not change the library as it stands
	@before="$$(find babyvlm -name '*.py' -exec sha256sum {} + | sort -k2)"; \
	$(BIN)/nbdev_export || exit 1; \
	after="$$(find babyvlm -name '*.py' -exec sha256sum {} + | sort -k2)"; \
	if [ "$$before" != "$$after" ]; then \
	  echo "nbdev_export changed babyvlm/: edit the notebooks (not the .py files), export, and commit both:"; \
	  diff <(echo "$$before") <(echo "$$after") | grep '^[<>]'; exit 1; fi; \
	echo "nbdev_export: babyvlm/ matches the notebooks"
	@# two notebooks at a time, one torch thread each (1.9x faster than one at a time on 2 threads, on 2 cores)
	BABYVLM_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2
	@# the tests in two workers (pytest-xdist; one torch thread per process, tests/conftest.py), then the multi-process
	@# ones (marked serial) alone
	$(BIN)/pytest -q -n 2 --dist loadfile -m "not serial" tests --ignore=tests/test_cluster.py
	$(BIN)/pytest -q -m serial tests --ignore=tests/test_cluster.py

# The cluster executor's tests against a real single-node Slurm (tests/test_cluster.py, 5-9 minutes): apart from
# `make test` because they need Debian's Slurm, a large extra install; CI runs this after `make test`.
test-cluster: assets
	@$(MAKE) -s slurm-packages || echo "slurm-packages failed: tests/test_cluster.py falls back to submitit's local executor"
	$(BIN)/pytest -q tests/test_cluster.py

# Debian's Slurm and munge, for the cluster executor's test against a real single-node Slurm (tests/test_cluster.py);
# `make test-cluster` runs this first. Without them (or without root) that test says so and uses submitit's local executor.
SLURM_DEBS := slurmctld slurmd slurm-client munge
slurm-packages:
	@if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null; then \
	  echo "slurm-packages: already installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(SLURM_DEBS) >/dev/null && echo "slurm-packages: installed $(SLURM_DEBS)"; \
	else echo "slurm-packages: needs root and apt-get; tests/test_cluster.py will fall back to submitit's local executor"; fi

# lmms-eval (the harness the paper's numbers come from, through the authors' babylmms-eval fork) in its own virtual
# environment .venv-lmms: lmms-eval's dependency tree is large, so it stays out of .venv. Every package babyvlm pins in
# settings.ini is pinned here too (a constraints file written from settings.ini), so both venvs run the same torch.
# tests/test_lmms.py runs the real harness on the authors' task files (../shared/reference/babylmms_eval_tasks, read
# unchanged) and compares it item by item with `babyvlm evaluate --ties harness`; under this target a missing lmms-eval
# fails the test (BABYVLM_REQUIRE_LMMS=1), where plain `make test` skips it.
LMMS_VENV := .venv-lmms
LMMS_STAMP := $(LMMS_VENV)/.installed
LMMS_EVAL := lmms-eval==0.7.3
# lmms-eval 0.7.3 patches filelock's internals (`filelock._api`, gone in filelock 4): the one pin of its own
LMMS_PINS := filelock==3.32.7
lmms-venv: $(LMMS_STAMP)

$(LMMS_STAMP): settings.ini setup.py Makefile
	test -x $(LMMS_VENV)/bin/python || $(PYTHON) -m venv $(LMMS_VENV)
	$(PYTHON) -c "import configparser; c = configparser.ConfigParser(); c.read('settings.ini'); d = c['DEFAULT']; print('\n'.join((d['requirements'] + ' ' + d['dev_requirements']).split()))" > $(LMMS_VENV)/constraints.txt
	$(LMMS_VENV)/bin/pip install --disable-pip-version-check -q -c $(LMMS_VENV)/constraints.txt "$(LMMS_EVAL)" $(LMMS_PINS) -e ".[dev]"
	touch $(LMMS_STAMP)

test-lmms: $(LMMS_STAMP)
	$(LMMS_VENV)/bin/babyvlm assets fetch
	BABYVLM_REQUIRE_LMMS=1 $(LMMS_VENV)/bin/pytest -q -s tests/test_lmms.py

# JupyterLab on nbs/ with the venv's `babyvlm` kernel (as root, as in a container, it needs --allow-root);
# LAB_ARGS passes options on, e.g. `make lab LAB_ARGS="--no-browser --port 8899"`
LAB_ARGS ?=
lab: $(STAMP)
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS) nbs

clean-outputs:
	rm -rf outputs/*/
