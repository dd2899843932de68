# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when it is missing.
VENV    ?= .venv
PY      := $(VENV)/bin/python
EXTRAS  ?= ros,cpu,train,dev
STAMP   := $(VENV)/.moose-installed

.PHONY: demo test venv lint clean

venv: $(STAMP)

$(STAMP): setup.py setup.cfg package.xml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/moose demo

test: $(STAMP)
	MOOSE_REQUIRE_LINT=1 $(PY) -m pytest -q -ra test

lint: $(STAMP)
	$(VENV)/bin/ruff check moose_ros test launch setup.py

clean:
	rm -rf $(VENV) build dist *.egg-info out
