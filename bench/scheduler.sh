#!/usr/bin/env bash
# One scheduler round over ENVIRONMENTS environments with DUE_PERCENT due (issue 14): its
# time and store reads, SQLite in process (bench/src/bin/scheduler-tick.rs). See
# docs/benchmarks.md.
#
# Usage: bench/scheduler.sh [ENVIRONMENTS] [DUE_PERCENT]   (default 100000 1)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p envplane-bench --bin scheduler-tick
./target/release/scheduler-tick "${1:-100000}" "${2:-1}"
