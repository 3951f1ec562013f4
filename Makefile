# babyvlm: the two entry points are `make study` (the study and its report) and `make test`.
# Both create/refresh the virtual environment first and fetch the registry assets (a no-op when cached).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= default
STAMP := $(VENV)/.installed

.PHONY: study test assets venv clean-outputs lab

venv: $(STAMP)

$(STAMP): settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e ".[dev]"
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
	$(BIN)/nbdev_test --n_workers 1
	$(BIN)/pytest -q tests

lab: $(STAMP)
	$(BIN)/jupyter lab nbs

clean-outputs:
	rm -rf outputs/*/
