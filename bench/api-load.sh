#!/usr/bin/env bash
# API read benchmark (issue 2): GET /v1/environments/{id} and
# GET /v1/environments?project_id= with 10,000 environments in the store, served by a
# release build of `envplane serve` (SQLite) on loopback, next to a bare axum server
# returning a constant (the ceiling). See docs/benchmarks.md.
#
# Usage: bench/api-load.sh
#
# Knobs (environment variables, defaults in brackets):
#   ENVIRONMENTS [10000]  environments seeded through the API
#   RATE [1000]           requests/s of the fixed-rate runs
#   FIXED_SECS [15]       length of each fixed-rate run
#   SAT_SECS [10]         length of each saturation run
#   FIXED_CONNECTIONS [32], SAT_CONNECTIONS [64]  keep-alive connections of the load tool
#   PIN [1]               1: server on CPU 0, load tool on CPU 1 (taskset); 0: no pinning
#   QUIET_TIMEOUT [1800]  seconds to wait for other builds (cargo, rustc) to finish
#   OTHER_MAX [0.10], TRIES [4]  a run during which other processes kept more than
#                         OTHER_MAX cores busy is repeated, up to TRIES times
#   RESULTS_DIR [mktemp]  where the raw oha JSON and summary.md are kept
#
# Load tool: oha (pinned version), installed into bench/.tools when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENVIRONMENTS="${ENVIRONMENTS:-10000}"
RATE="${RATE:-1000}"
FIXED_SECS="${FIXED_SECS:-15}"
SAT_SECS="${SAT_SECS:-10}"
FIXED_CONNECTIONS="${FIXED_CONNECTIONS:-32}"
SAT_CONNECTIONS="${SAT_CONNECTIONS:-64}"
PIN="${PIN:-1}"
QUIET_TIMEOUT="${QUIET_TIMEOUT:-1800}"
OHA_VERSION="1.16.0"
TOOLS="$ROOT/bench/.tools"
OHA="$TOOLS/bin/oha"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for tool in cargo python3 curl; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

# --- servers started by this script are stopped on any exit ------------------------
PIDS=()
WORK="$(mktemp -d -t envplane-bench.XXXXXX)"
RESULTS_DIR="${RESULTS_DIR:-$WORK/results}"
mkdir -p "$RESULTS_DIR"
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK/data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- CPU pinning: the server and the load tool share this machine's cores ----------
SERVER_PIN=()
LOAD_PIN=()
OHA_THREADS=()
if [[ "$PIN" == 1 ]]; then
    if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
        SERVER_PIN=(taskset -c 0)
        LOAD_PIN=(taskset -c 1)
        OHA_THREADS=(--worker-threads 1)
        log "pinning: servers on CPU 0, oha on CPU 1"
    else
        log "pinning requested but taskset or a second CPU is missing: not pinning"
    fi
fi

# --- tools and binaries -------------------------------------------------------------
if [[ ! -x "$OHA" ]] || [[ "$("$OHA" --version)" != "oha $OHA_VERSION" ]]; then
    log "installing oha $OHA_VERSION into $TOOLS (once)"
    cargo install oha --version "$OHA_VERSION" --locked --root "$TOOLS"
fi

log "building release binaries"
(cd "$ROOT" && cargo build --release -p envplane-cli -p envplane-bench)
ENVPLANE="$TARGET_DIR/release/envplane"
CONSTANT="$TARGET_DIR/release/constant-server"
[[ -x "$ENVPLANE" && -x "$CONSTANT" ]] || die "release binaries not found in $TARGET_DIR/release"

# Starts "$@" in the background, logging to $1.log in $WORK, and sets BASE_URL from the
# "listening on http://ADDR" line it prints.
start_server() {
    local name="$1"; shift
    local out="$WORK/$name.log"
    "${SERVER_PIN[@]}" "$@" >"$out" 2>&1 &
    PIDS+=("$!")
    local pid="$!"
    for _ in $(seq 100); do
        BASE_URL="$(sed -n 's/.*listening on \(http:\/\/[^ ]*\).*/\1/p' "$out" | head -n1)"
        [[ -n "$BASE_URL" ]] && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$out" >&2; die "$name exited at start"; }
        sleep 0.1
    done
    cat "$out" >&2
    die "$name did not print its address within 10 s"
}

# --- a quiet machine: other work on these 2 cores would skew the numbers -------------
# Waits until no build (cargo, rustc) runs, and then 5 s more with none.
wait_quiet() {
    local waited=0 calm=0
    while (( calm < 5 )); do
        if pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null; then
            (( waited % 60 == 0 )) && log "other builds are running (cargo/rustc); waiting"
            (( waited >= QUIET_TIMEOUT )) && die "builds still running after ${QUIET_TIMEOUT}s"
            calm=0
        else
            calm=$((calm + 1))
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

# CPU seconds (user + system, all threads) process $1 has used so far.
cpu_seconds() {
    awk -v tck="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / tck }' "/proc/$1/stat"
}

# CPU seconds the whole machine has been busy so far (all but idle and iowait).
machine_busy_seconds() {
    awk -v tck="$(getconf CLK_TCK)" \
        '/^cpu / { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / tck }' /proc/stat
}

# --- oha runs -------------------------------------------------------------------------
# measure NAME SECONDS OHA-ARGS... : one oha run against the last server started, JSON in
# $RESULTS_DIR/NAME.json and "server_cores oha_cores other_cores" in $RESULTS_DIR/NAME.cpu.
# A run during which other processes kept more than OTHER_MAX cores busy is repeated
# (up to TRIES times); the last try is kept and flagged in the summary.
OTHER_MAX="${OTHER_MAX:-0.10}"
TRIES="${TRIES:-4}"
measure() {
    local name="$1" seconds="$2"; shift 2
    local pid="${PIDS[-1]}" try server0 machine0 server1 machine1 oha_cpu cores
    for try in $(seq "$TRIES"); do
        wait_quiet
        server0="$(cpu_seconds "$pid")"
        machine0="$(machine_busy_seconds)"
        # bash's `time` gives oha's own CPU (user and system) on the timing file.
        { TIMEFORMAT='%3U %3S'; time "${LOAD_PIN[@]}" "$OHA" --no-tui --output-format json \
            -o "$RESULTS_DIR/$name.json" "${OHA_THREADS[@]}" -z "${seconds}s" "$@" \
            2>"$WORK/oha.err"; } 2>"$WORK/oha.time" \
            || { cat "$WORK/oha.err" >&2; die "oha failed ($name)"; }
        server1="$(cpu_seconds "$pid")"
        machine1="$(machine_busy_seconds)"
        oha_cpu="$(awk '{ print $1 + $2 }' "$WORK/oha.time")"
        cores="$(awk -v s0="$server0" -v s1="$server1" -v m0="$machine0" -v m1="$machine1" \
            -v o="$oha_cpu" -v t="$seconds" 'BEGIN {
                server = (s1 - s0) / t; oha = o / t; other = (m1 - m0) / t - server - oha
                if (other < 0) other = 0
                printf "%.2f %.2f %.2f\n", server, oha, other }')"
        echo "$cores" >"$RESULTS_DIR/$name.cpu"
        local other="${cores##* }"
        if awk -v o="$other" -v max="$OTHER_MAX" 'BEGIN { exit !(o > max) }'; then
            log "$name: other processes used $other cores during the run (try $try/$TRIES)"
            continue
        fi
        break
    done
    check_answers "$RESULTS_DIR/$name.json" "$name"
}

# Any non-2xx answer or transport error makes the numbers meaningless: stop the whole
# benchmark, naming the run.
check_answers() { # OHA-JSON NAME
    python3 - "$1" "$2" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1]))
codes = data["statusCodeDistribution"]
bad = {code: n for code, n in codes.items() if not code.startswith("2")}
errors = {k: v for k, v in data["errorDistribution"].items() if "deadline" not in k}
if bad or errors or not codes:
    sys.exit(f"{sys.argv[2]}: unexpected answers {codes} errors {errors}")
EOF
}

fixed_rate() { # NAME URL-ARGS...
    local name="$1"; shift
    log "$name: $RATE req/s for ${FIXED_SECS}s"
    measure "$name-fixed" "$FIXED_SECS" -q "$RATE" --latency-correction \
        -c "$FIXED_CONNECTIONS" "$@"
}

saturate() { # NAME URL-ARGS...
    local name="$1"; shift
    log "$name: saturation for ${SAT_SECS}s with $SAT_CONNECTIONS connections"
    measure "$name-sat" "$SAT_SECS" -c "$SAT_CONNECTIONS" "$@"
}

warm_up() { # URL-ARGS...
    "${LOAD_PIN[@]}" "$OHA" --no-tui --output-format json -o "$WORK/warm-up.json" \
        "${OHA_THREADS[@]}" -z 2s -c "$SAT_CONNECTIONS" "$@"
    check_answers "$WORK/warm-up.json" warm-up
}

# --- envplane serve with 10,000 environments -------------------------------------------
mkdir -p "$WORK/data"
log "starting envplane serve (data dir $WORK/data)"
start_server envplane "$ENVPLANE" serve --data-dir "$WORK/data" --listen 127.0.0.1:0
ENVPLANE_URL="$BASE_URL"
KEY="$(tr -d '[:space:]' <"$WORK/data/admin-key")"
[[ -n "$KEY" ]] || die "no admin key in $WORK/data/admin-key"
AUTH="Authorization: Bearer $KEY"
log "envplane at $ENVPLANE_URL"

log "seeding $ENVIRONMENTS environments"
python3 "$ROOT/bench/seed.py" "$ENVPLANE_URL" "$KEY" "$ENVIRONMENTS" "$WORK" >&2
PROJECT_ID="$(cat "$WORK/project_id")"
# oha picks one of these URLs at random for every request: reads spread over all rows.
sed "s|^|$ENVPLANE_URL/v1/environments/|" "$WORK/environment_ids" >"$WORK/get-urls"
LIST_URL="$ENVPLANE_URL/v1/environments?project_id=$PROJECT_ID"

# Sanity: both endpoints answer 200 with the expected shapes.
curl -fsS -H "$AUTH" "$(head -n1 "$WORK/get-urls")" | python3 -c \
    'import json,sys; assert json.load(sys.stdin)["id"].startswith("env")' \
    || die "GET /v1/environments/{id} did not answer an environment"
LIST_ITEMS="$(curl -fsS -H "$AUTH" "$LIST_URL" | python3 -c \
    'import json,sys; print(len(json.load(sys.stdin)["items"]))')" \
    || die "GET /v1/environments?project_id= did not answer a listing"
log "the listing answers $LIST_ITEMS environments per page (the API default)"
# Count the store through the API (pages of 500) to be sure every environment is there.
STORED="$(python3 - "$LIST_URL" "$KEY" <<'EOF'
import json, sys, urllib.parse, urllib.request
url, key, count, cursor = sys.argv[1], sys.argv[2], 0, None
while True:
    page_url = url + "&limit=500" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
    request = urllib.request.Request(page_url, headers={"Authorization": f"Bearer {key}"})
    page = json.load(urllib.request.urlopen(request))
    count += len(page["items"])
    cursor = page["next"]
    if not cursor:
        break
print(count)
EOF
)"
[[ "$STORED" == "$ENVIRONMENTS" ]] || die "the API lists $STORED environments, expected $ENVIRONMENTS"
log "the API lists $STORED environments in the project"

GET_ARGS=(-H "$AUTH" --urls-from-file "$WORK/get-urls")
LIST_ARGS=(-H "$AUTH" "$LIST_URL")
warm_up "${GET_ARGS[@]}"
fixed_rate get "${GET_ARGS[@]}"
saturate get "${GET_ARGS[@]}"
warm_up "${LIST_ARGS[@]}"
fixed_rate list "${LIST_ARGS[@]}"
saturate list "${LIST_ARGS[@]}"

kill "${PIDS[0]}" && wait "${PIDS[0]}" 2>/dev/null || true
PIDS=()

# --- the ceiling: bare axum returning a constant -----------------------------------------
log "starting constant-server"
start_server constant-server "$CONSTANT" 127.0.0.1:0
CONSTANT_URL="$BASE_URL/"
warm_up "$CONSTANT_URL"
fixed_rate constant "$CONSTANT_URL"
saturate constant "$CONSTANT_URL"

# --- summary -------------------------------------------------------------------------------
python3 - "$RESULTS_DIR" "$RATE" "$LIST_ITEMS" "$SAT_CONNECTIONS" "$OTHER_MAX" \
    >"$RESULTS_DIR/summary.md" <<'EOF'
import json, os, sys
results, rate, items, connections, other_max = sys.argv[1:6]
TARGET_P99_MS = 5.0
load = lambda name: json.load(open(os.path.join(results, name + ".json")))
cpu = lambda name: [float(x) for x in open(os.path.join(results, name + ".cpu")).read().split()]
ms = lambda seconds: seconds * 1000
ceiling = load("constant-sat")["summary"]["requestsPerSec"]
rows = [
    ("`GET /v1/environments/{id}`", "get"),
    (f"`GET /v1/environments?project_id=` ({items} items)", "list"),
    ("constant (bare axum, the ceiling)", "constant"),
]
print(f"| endpoint | achieved rps | p50 ms | p99 ms | max ms "
      f"| saturation req/s ({connections} conns) | server / oha CPU (cores) | ratio to constant |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
notes, disturbed = [], []
for label, name in rows:
    fixed, sat = load(name + "-fixed"), load(name + "-sat")
    p99 = ms(fixed["latencyPercentiles"]["p99"])
    rps = sat["summary"]["requestsPerSec"]
    server, oha, _ = cpu(name + "-sat")
    for run in (name + "-fixed", name + "-sat"):
        if cpu(run)[2] > float(other_max):
            disturbed.append(f"{run} ({cpu(run)[2]:.2f} cores)")
    print(f"| {label} | {fixed['summary']['requestsPerSec']:,.0f} "
          f"| {ms(fixed['latencyPercentiles']['p50']):.2f} | {p99:.2f} "
          f"| {ms(fixed['summary']['slowest']):.2f} | {rps:,.0f} | {server:.2f} / {oha:.2f} "
          f"| {rps / ceiling:.3f} |")
    if name != "constant":
        met = "met" if p99 < TARGET_P99_MS else "MISSED"
        notes.append(f"- {label}: p99 {p99:.2f} ms at {rate} req/s: "
                     f"target < {TARGET_P99_MS:g} ms {met}")
print()
print(f"p50/p99/max at a fixed {rate} req/s (oha -q, latency corrected); CPU columns "
      "from the saturation run.")
print("\n".join(notes))
if disturbed:
    print("- WARNING: other processes were busy during " + ", ".join(disturbed)
          + "; those numbers are skewed")
EOF
log "results (raw oha JSON, CPU use and summary.md) in $RESULTS_DIR"
echo
cat "$RESULTS_DIR/summary.md"
