# The two commands of the README: `make demo` and `make test`. Everything they need is installed
# here: a virtual environment from pinned requirements, our packages in editable mode, (when run
# as root on Debian) the system library open3d needs, and for `make test`
# (not `make demo`, which needs no ROS) the ROS 2 Jazzy core from PyPI wheels with bopask_msgs built
# by colcon (scripts/ros_env.sh), so the ROS tests run with real rclpy and DDS.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.stamp-deps
PKG_STAMP := $(VENV)/.stamp-pkgs
SYS_STAMP := .stamp-sysdeps
DEBIAN_PKGS := libusb-1.0-0
PYTEST_ARGS ?=
# ROS: the wheels of requirements-ros.txt in $(VENV), bopask_msgs built into build/ install/ (rebuilt
# only when bopask_msgs, the pins or the script change); recipes that need it source ros_paths.sh,
# which puts bopask_msgs' install prefix (and nothing else of install/) on the paths
ROS_STAMP := install/bopask_msgs/.stamp-bopask-msgs
ROS_SRCS := $(shell find bopask_msgs -type f 2>/dev/null)
WITH_ROS := source scripts/ros_paths.sh install &&

.PHONY: demo test lint format sysdeps venv ros clean bench colcon-list

demo: sysdeps venv
	$(PY) -m bopask_ros.replay.demo --out demo_out $(DEMO_ARGS)
	@# the closed loop in physics (bopask_sim, pybullet's Panda): appends its section to demo_out/report.md
	$(PY) -m bopask_sim.demo --out demo_out --quiet

test: sysdeps venv ros lint
	$(WITH_ROS) $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check bopask_vlm bopask_ros bopask_sim tests benchmarks

format: venv
	$(VENV)/bin/ruff format bopask_vlm bopask_ros bopask_sim tests benchmarks

bench: sysdeps venv ros
	@$(WITH_ROS) for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

colcon-list: venv
	$(VENV)/bin/colcon list

venv: $(PKG_STAMP)

ros: $(ROS_STAMP)

$(ROS_STAMP): $(PKG_STAMP) requirements-ros.txt scripts/ros_env.sh scripts/ros_paths.sh $(ROS_SRCS)
	bash scripts/ros_env.sh $(VENV) .
	touch $@

$(DEPS_STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(PKG_STAMP): $(DEPS_STAMP) bopask_vlm/setup.py bopask_ros/setup.py bopask_sim/setup.py
	$(PY) -m pip install -q --no-deps --no-build-isolation -e ./bopask_vlm -e ./bopask_ros -e ./bopask_sim
	touch $@

# Debian libraries: libusb for open3d's import (rosidl, for the interface tests, comes with the ROS wheels).
sysdeps:
	@missing=""; for p in $(DEBIAN_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || { echo "apt-get failed for:$$missing" >&2; exit 1; }; \
	else \
	  echo "warning: missing Debian packages:$$missing (run 'sudo apt-get install$$missing')" >&2; \
	fi

clean:
	rm -rf $(VENV) demo_out build install log .pytest_cache .ruff_cache

# The real vLLM server test: vLLM's CPU build in its own environment (.venv-vllm, ~4 min, ~6 GB).
.PHONY: test-vllm
test-vllm: sysdeps venv
	bash scripts/vllm_venv.sh .venv-vllm
	$(PY) -m pytest -m vllm tests/test_clients_vllm.py $(PYTEST_ARGS)
