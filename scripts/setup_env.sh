#!/usr/bin/env bash
# Create (or update) the virtual environment .venv with seqace_ros and everything it needs.
#   scripts/setup_env.sh          library + tests
#   SEQACE_ROS=1 scripts/setup_env.sh   also the PyPI ROS 2 wheels (for the ROS tests and nodes) and,
#       where ../shared/ros2-from-source exists (or SEQACE_ROS2_FROM_SOURCE names such a folder) and cmake
#       is installed, launch, ros2cli, tf2_ros, tf2_msgs and colcon built from it (skipped with the reason
#       otherwise; the colcon / ros2 launch / tf2_ros tests then skip too)
# Idempotent: a second run only checks. Needs python3 (3.10-3.12) with venv, and a C++17 compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q -c constraints.txt --upgrade pip setuptools wheel
# torch first, pinned: nothing afterwards may replace it with a CUDA build.
python -m pip install -q -c constraints.txt "torch==2.13.0"
EXTRAS=test
[ "${SEQACE_ROS:-0}" = "1" ] && EXTRAS=test,ros
echo "[setup] installing seqace_ros[$EXTRAS] (builds the native RANSAC module)"
python -m pip install -q -c constraints.txt -e ".[$EXTRAS]"
if [ "${SEQACE_ROS:-0}" = "1" ]; then
  FROM_SOURCE=${SEQACE_ROS2_FROM_SOURCE:-../shared/ros2-from-source}
  if [ -f "$FROM_SOURCE/install.sh" ]; then
    python test/ros_support/setup_ros_env.py --pip-arg=-c --pip-arg=constraints.txt --from-source "$FROM_SOURCE"
  else
    echo "[setup] $FROM_SOURCE/install.sh not found: no launch, ros2cli, tf2_ros or colcon (their tests skip)"
    python test/ros_support/setup_ros_env.py
  fi
fi
python -c "import seqace_ros._native, seqace_ros.encoder; print('[setup] seqace_ros ready')"
