#!/usr/bin/env bash
# Dispatch throughput through the deployer on the AWS emulator (issue 4): DEPLOYMENTS
# queued deployments over ENVIRONMENTS environments, DEPLOYERS concurrent deployer
# instances, zero duplicate tasks checked at the end (bench/src/bin/dispatch.rs). Runs
# against moto server started with bench/moto_server.py, which mends moto's DynamoDB
# transaction memory leak; prints the emulator's peak memory. See docs/benchmarks.md.
#
# Usage: bench/dispatch.sh [DEPLOYMENTS] [ENVIRONMENTS] [DEPLOYERS]   (default 1000 100 5)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/install.sh

ensure_python_tools
cargo build --release -p envplane-bench --bin dispatch
start_moto bench/moto_server.py
./target/release/dispatch "${1:-1000}" "${2:-100}" "${3:-5}"
echo "emulator peak memory: $(awk '/VmHWM/ {printf "%.0f MB", $2 / 1024}' "/proc/$MOTO_PID/status")"
