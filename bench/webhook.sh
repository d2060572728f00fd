#!/usr/bin/env bash
# Webhook handling latency in local mode (issue 13): REQUESTS deliveries, each touching
# ENVIRONMENTS / TEMPLATES of ENVIRONMENTS environments, GitHub answered by the test
# kit's fake (bench/src/bin/webhook-latency.rs). See docs/benchmarks.md.
#
# Usage: bench/webhook.sh [REQUESTS] [ENVIRONMENTS] [TEMPLATES]   (default 200 500 10)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p envplane-bench --bin webhook-latency
./target/release/webhook-latency "${1:-200}" "${2:-500}" "${3:-10}"
