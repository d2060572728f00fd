#!/usr/bin/env bash
# Deployment latency in local mode (issue 3): how long a queued deployment takes to get
# a sandbox, for its runner to come alive, to reach its first terraform command and to
# end, on a release `envplane serve` with bubblewrap and Terraform 1.0.3; plus what
# starting bubblewrap and the runner process costs by themselves (hyperfine). See
# docs/benchmarks.md, section "Deployments in local mode (issue 3)".
#
# Usage: bench/deploy-latency.sh
#
# Knobs (environment variables, defaults in brackets):
#   DEPLOYMENTS [50]      measured plan-only deployments per scenario
#   ENVIRONMENTS [10]     environments of the spread scenario
#   MAX_PARALLEL [4]      the server's --max-parallel-deployments
#   WARMUP [1]            uncounted deployments before each scenario
#   HYPERFINE_RUNS [200]  runs of each hyperfine command
#   QUIET_TIMEOUT [1800]  seconds to wait for a quiet machine before giving up
#   QUIET_CORES [0.25]    a scenario starts once no cargo/rustc runs and the machine is
#                         below this many busy cores for 5 s
#   OTHER_MAX [0.15], TRIES [3]  a scenario during which other processes kept more than
#                         OTHER_MAX cores busy is run again, up to TRIES times
#   RESULTS_DIR [mktemp]  where the raw deployments, hyperfine JSON and summary.md go
#
# Needs bubblewrap (bwrap), git, python3 and hyperfine (apt-get install hyperfine).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPLOYMENTS="${DEPLOYMENTS:-50}"
ENVIRONMENTS="${ENVIRONMENTS:-10}"
MAX_PARALLEL="${MAX_PARALLEL:-4}"
WARMUP="${WARMUP:-1}"
HYPERFINE_RUNS="${HYPERFINE_RUNS:-200}"
QUIET_TIMEOUT="${QUIET_TIMEOUT:-1800}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
TOOLS_DIR="$TARGET_DIR/tools"
HELPER="$ROOT/bench/deploy_latency.py"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for tool in cargo python3 git bwrap; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
if ! command -v hyperfine >/dev/null; then
    log "installing hyperfine (apt)"
    apt-get install -y hyperfine >/dev/null 2>&1 \
        || { apt-get update >/dev/null && apt-get install -y hyperfine >/dev/null; } \
        || die "hyperfine is required (apt-get install hyperfine)"
fi

# --- the server started here is stopped on any exit ------------------------------------
SERVER_PID=""
WORK="$(mktemp -d -t envplane-deploy-bench.XXXXXX)"
RESULTS_DIR="${RESULTS_DIR:-$WORK/results}"
mkdir -p "$RESULTS_DIR"
cleanup() {
    local pid
    for pid in "$SERVER_PID" "${WATCH_PID:-}"; do
        if [[ -n "$pid" ]]; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK/data" "$WORK/repos"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- binaries and Terraform --------------------------------------------------------------
log "building release binaries"
(cd "$ROOT" && cargo build --release -p envplane-cli -p envplane-runner --bins)
ENVPLANE="$TARGET_DIR/release/envplane"
RUNNER="$TARGET_DIR/release/envplane-runner"
[[ -x "$ENVPLANE" && -x "$RUNNER" ]] || die "release binaries not found in $TARGET_DIR/release"
# shellcheck source=../scripts/lib/install.sh
source "$ROOT/scripts/lib/install.sh"
ensure_python_tools
ensure_test_terraform

# --- a quiet machine: other work on these 2 cores would skew the numbers ------------------
# CPU seconds the whole machine has been busy so far (all but idle and iowait).
machine_busy_seconds() {
    awk -v tck="$(getconf CLK_TCK)" \
        '/^cpu / { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / tck }' /proc/stat
}

# Waits until no build (cargo, rustc) runs and the machine is nearly idle (below
# QUIET_CORES busy over a second), 5 times in a row.
QUIET_CORES="${QUIET_CORES:-0.25}"
wait_quiet() {
    local waited=0 calm=0 busy0 busy1
    while (( calm < 5 )); do
        busy0="$(machine_busy_seconds)"
        sleep 1
        busy1="$(machine_busy_seconds)"
        waited=$((waited + 1))
        if pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null \
            || awk -v a="$busy0" -v b="$busy1" -v max="$QUIET_CORES" 'BEGIN { exit !(b - a > max) }'; then
            (( waited % 60 == 1 )) && log "the machine is busy (builds or other load); waiting"
            (( waited >= QUIET_TIMEOUT )) && die "the machine is still busy after ${QUIET_TIMEOUT}s"
            calm=0
        else
            calm=$((calm + 1))
        fi
    done
}

# measured LABEL COMMAND...: runs COMMAND while `deploy_latency.py watch` samples how
# busy processes outside this script's tree (other work on the machine) kept the CPUs;
# appends that and the machine's whole load to machine.txt and sets OTHER (cores).
WATCH_PID=""
measured() {
    local label="$1"; shift
    local busy0 busy1 clock0 clock1 load0 status=0
    load0="$(cut -d' ' -f1-3 /proc/loadavg)"
    python3 "$HELPER" watch "$$" "$WORK/watch.out" &
    WATCH_PID="$!"
    busy0="$(machine_busy_seconds)"; clock0="$(date +%s.%N)"
    "$@" || status=$?
    busy1="$(machine_busy_seconds)"; clock1="$(date +%s.%N)"
    kill -TERM "$WATCH_PID" 2>/dev/null || true
    wait "$WATCH_PID" 2>/dev/null || true
    WATCH_PID=""
    local other peak seconds top
    read -r other peak seconds top <"$WORK/watch.out"
    OTHER="$other"
    echo "$label: $seconds s; cores busy: whole machine" \
        "$(awk -v b0="$busy0" -v b1="$busy1" -v t0="$clock0" -v t1="$clock1" \
            'BEGIN { printf "%.2f", (b1 - b0) / (t1 - t0) }')," \
        "other processes $other (peak $peak, most: $top); load average before $load0," \
        "after $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS_DIR/machine.txt"
    return "$status"
}
OTHER_MAX="${OTHER_MAX:-0.15}"
TRIES="${TRIES:-3}"

# --- the template's repository: GREETING_CONFIG of tests/src/lib.rs, no providers -------
mkdir -p "$WORK/repos/infra"
cat >"$WORK/repos/infra/main.tf" <<'EOF'
variable "greeting" {
  type    = string
  default = "hello"
}

variable "password" {
  type      = string
  sensitive = true
  default   = "unset"
}

locals {
  message = "${var.greeting} world"
}

output "message" {
  value = local.message
}

output "password" {
  value     = var.password
  sensitive = true
}
EOF
git_quiet() {
    git -c user.email=bench@envplane.dev -c user.name=bench -c init.defaultBranch=main \
        -C "$WORK/repos/infra" "$@" >/dev/null
}
git_quiet init --quiet
git_quiet add --all
git_quiet commit --quiet --message fixture
REPOSITORY="file://$WORK/repos/infra"

# --- envplane serve ---------------------------------------------------------------------------
mkdir -p "$WORK/data"
log "starting envplane serve (data dir $WORK/data, max $MAX_PARALLEL sandboxes)"
"$ENVPLANE" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --runner "$RUNNER" \
    --tools-dir "$TOOLS_DIR" --max-parallel-deployments "$MAX_PARALLEL" \
    --local-repos "$WORK/repos" >"$WORK/server.log" 2>&1 &
SERVER_PID="$!"
BASE_URL=""
for _ in $(seq 100); do
    BASE_URL="$(sed -n 's/.*listening on \(http:\/\/[^ ]*\).*/\1/p' "$WORK/server.log" | head -n1)"
    [[ -n "$BASE_URL" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "envplane exited at start"; }
    sleep 0.1
done
[[ -n "$BASE_URL" ]] || die "envplane did not print its address within 10 s"
grep -qi "NOT in a sandbox" "$WORK/server.log" && die "the server did not find bubblewrap"
KEY="$(tr -d '[:space:]' <"$WORK/data/admin-key")"
log "envplane at $BASE_URL"

# --- the deployments ------------------------------------------------------------------------
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
    echo "kernel: $(uname -r)"
    echo "bwrap: $(bwrap --version)"
    echo "terraform: $("$TOOLS_DIR/terraform/1.0.3/terraform" version | head -n1)"
} >"$RESULTS_DIR/machine.txt"

# A scenario during which other processes kept more than OTHER_MAX cores busy is run
# again, up to TRIES times in all; the last try is kept (machine.txt tells).
for scenario in sequential spread; do
    for try in $(seq "$TRIES"); do
        wait_quiet
        log "$scenario: $DEPLOYMENTS deployments (try $try/$TRIES)"
        measured "$scenario (try $try)" python3 "$HELPER" run "$BASE_URL" "$KEY" \
            "$REPOSITORY" "$scenario" "$RESULTS_DIR/$scenario.deployments.json" \
            --deployments "$DEPLOYMENTS" --warmup "$WARMUP" --max-parallel "$MAX_PARALLEL" \
            --environments "$([[ $scenario == spread ]] && echo "$ENVIRONMENTS" || echo 1)"
        awk -v o="$OTHER" -v max="$OTHER_MAX" 'BEGIN { exit !(o > max) }' || break
        log "$scenario: other processes kept $OTHER cores busy meanwhile"
    done
done

kill "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
SERVER_PID=""

# --- process start costs (hyperfine, no shell) -------------------------------------------------
# The launcher's bubblewrap command line (shared/local/src/launcher.rs), less the work
# directory and repository binds.
SANDBOX=(bwrap --die-with-parent --unshare-pid --unshare-ipc --unshare-uts --unshare-cgroup-try
    --ro-bind /usr /usr --ro-bind /etc /etc --ro-bind-try /bin /bin --ro-bind-try /sbin /sbin
    --ro-bind-try /lib /lib --ro-bind-try /lib64 /lib64 --ro-bind-try /lib32 /lib32
    --proc /proc --dev /dev --tmpfs /tmp
    --ro-bind "$RUNNER" /opt/envplane/envplane-runner
    --ro-bind-try "$TOOLS_DIR" /opt/envplane/tools --clearenv)
wait_quiet
log "hyperfine: bubblewrap and runner start"
measured hyperfine hyperfine --shell=none --warmup 20 --runs "$HYPERFINE_RUNS" --ignore-failure \
    --export-json "$RESULTS_DIR/process-start.hyperfine.json" \
    -n '/bin/true' '/bin/true' \
    -n 'bwrap --ro-bind / / --unshare-pid --die-with-parent /bin/true' \
    'bwrap --ro-bind / / --unshare-pid --die-with-parent /bin/true' \
    -n 'bwrap (launcher arguments) /bin/true' "${SANDBOX[*]} /bin/true" \
    -n 'env -i envplane-runner (exits: missing configuration)' "env -i $RUNNER" \
    -n 'bwrap (launcher arguments) envplane-runner (exits: missing configuration)' \
    "${SANDBOX[*]} /opt/envplane/envplane-runner" \
    -n 'terraform version (no checkpoint)' \
    "env -i CHECKPOINT_DISABLE=1 $TOOLS_DIR/terraform/1.0.3/terraform version" \
    >"$WORK/hyperfine.out" 2>&1 || { cat "$WORK/hyperfine.out" >&2; die "hyperfine failed"; }
RUNNER_SAYS="$(env -i "$RUNNER" 2>&1 || true)"
[[ "$RUNNER_SAYS" == *"missing configuration"* ]] \
    || die "envplane-runner did not stop at its configuration: $RUNNER_SAYS"

# --- summary -------------------------------------------------------------------------------------
python3 "$HELPER" report "$RESULTS_DIR" >"$RESULTS_DIR/summary.md"
log "results (raw deployments, hyperfine JSON, machine.txt, summary.md) in $RESULTS_DIR"
echo
cat "$RESULTS_DIR/machine.txt"
echo
cat "$RESULTS_DIR/summary.md"
