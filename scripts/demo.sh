#!/usr/bin/env bash
# Set everything up on a fresh machine and run the demo: a synthetic room is rendered, mapped and
# relocalized, and the results table and plots are written to seqace_demo/. Extra arguments go
# to `seqace demo` (e.g. --scene repetitive, or --scene /path/to/dsac_scene).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
SEQACE_ROS=0 bash scripts/setup_env.sh
t1=$(date +%s)
echo "[demo] set-up took $((t1 - t0)) s"
. .venv/bin/activate
exec seqace demo "$@"
