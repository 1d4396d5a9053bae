#!/usr/bin/env bash
# Set everything up on a fresh machine and run the whole test suite (ROS tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
SEQACE_ROS=${SEQACE_ROS:-1} bash scripts/setup_env.sh
. .venv/bin/activate
# ROS traffic stays on this machine; each test picks its own ROS_DOMAIN_ID.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-42}
exec python -m pytest -q -ra --durations=20 "$@"
