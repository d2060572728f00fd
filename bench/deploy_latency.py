#!/usr/bin/env python3
"""Deployment latency in local mode (issue 3), the helper of bench/deploy-latency.sh.

Usage:
  deploy_latency.py run BASE_URL API_KEY REPOSITORY SCENARIO OUT.json
      [--deployments N] [--environments E] [--warmup W] [--max-parallel P]
  deploy_latency.py watch ROOT_PID OUT
  deploy_latency.py report RESULTS_DIR

`run` creates, through the public API, one project, one template on REPOSITORY (a
file:// Git URL, Terraform 1.0.3) and E environments; queues W plan-only warm-up
deployments (not counted), then N plan-only deployments, and waits until all have
ended. SCENARIO is

  sequential  one environment; each deployment is queued once the previous one ended
              (the platform is idle when it is queued: nothing but the deployment's own
              start is measured);
  spread      E environments; all N deployments are queued at once, round robin over
              the environments (N/E each), and the server runs at most its
              --max-parallel-deployments sandboxes (4) at a time.

Every deployment as answered by GET /v1/deployments/{id} once it has ended goes to
OUT.json. All timestamps are the server's (one clock): created_at (queued),
started_at (the dispatcher started the sandbox), the steps' started_at (reported by the
runner: `clone` right after it fetched its job, `init` right before the first terraform
command) and finished_at.

`watch` samples /proc every 0.2 s until SIGTERM, then writes to OUT the average cores
that processes outside ROOT_PID's tree (other work on the machine) kept busy meanwhile:
"OTHER_CORES OTHER_MAX_CORES SECONDS TOP_PROCESS".

`report` reads every *.deployments.json (and hyperfine's *.hyperfine.json) in
RESULTS_DIR and prints the Markdown tables of docs/benchmarks.md.

Standard library only.
"""

import calendar
import json
import os
import signal
import statistics
import sys
import time
import urllib.error
import urllib.request

POLL_SECONDS = 0.05
DEPLOYMENT_TIMEOUT = 300
FINAL = {"succeeded", "failed", "cancelled", "rejected"}


# --- the API ---------------------------------------------------------------------------

class Api:
    def __init__(self, base_url, key):
        self.base_url = base_url.rstrip("/")
        self.key = key

    def call(self, method, path, body=None, expect=200):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.key}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read()
        if status != expect:
            raise RuntimeError(f"{method} {path} answered {status}: {text[:500]!r}")
        return json.loads(text) if text else None

    def deployment(self, deployment_id):
        return self.call("GET", f"/v1/deployments/{deployment_id}")

    def queue(self, environment_id):
        deployment = self.call(
            "POST",
            f"/v1/environments/{environment_id}/deployments",
            {"action": "plan"},
            expect=202,
        )
        assert deployment["status"] == "queued", deployment
        return deployment["id"]


def seed(api, repository, environments, name):
    project = api.call("POST", "/v1/projects", {"name": name}, expect=201)
    template = api.call(
        "POST",
        "/v1/templates",
        {
            "name": name,
            "project_id": project["id"],
            "repository": repository,
            "iac_version": "1.0.3",
        },
        expect=201,
    )
    return [
        api.call(
            "POST",
            "/v1/environments",
            {
                "name": f"{name}-{n:02d}",
                "project_id": project["id"],
                "template_id": template["id"],
            },
            expect=201,
        )["id"]
        for n in range(environments)
    ]


def wait_all(api, ids):
    """Polls until every deployment has ended; returns them, in the order of `ids`."""
    done, deadline = {}, time.monotonic() + DEPLOYMENT_TIMEOUT * max(1, len(ids) // 4)
    while len(done) < len(ids):
        for deployment_id in ids:
            if deployment_id in done:
                continue
            deployment = api.deployment(deployment_id)
            if deployment["status"] in FINAL:
                done[deployment_id] = deployment
        if len(done) < len(ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(ids) - len(done)} deployments never ended")
            time.sleep(POLL_SECONDS)
    return [done[i] for i in ids]


def check(deployments):
    failed = [d for d in deployments if d["status"] != "succeeded"]
    if failed:
        first = failed[0]
        raise RuntimeError(
            f"{len(failed)} deployments did not succeed; first {first['id']}: "
            f"{first['status']} ({first.get('reason')})"
        )


def run(argv):
    options = {"--deployments": 50, "--environments": None, "--warmup": 1,
               "--max-parallel": 4}
    positional = []
    while argv:
        arg = argv.pop(0)
        if arg in options:
            options[arg] = int(argv.pop(0))
        else:
            positional.append(arg)
    if len(positional) != 5:
        sys.exit(__doc__)
    base_url, key, repository, scenario, out = positional
    count, warmup = options["--deployments"], options["--warmup"]
    api = Api(base_url, key)

    if scenario == "sequential":
        environments = seed(api, repository, options["--environments"] or 1,
                            f"sequential-{time.time_ns()}")
        environment = environments[0]
        for _ in range(warmup):
            check(wait_all(api, [api.queue(environment)]))
        deployments = []
        for n in range(count):
            deployments += wait_all(api, [api.queue(environment)])
            print(f"\r  sequential: {n + 1}/{count}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    elif scenario == "spread":
        environments = seed(api, repository, options["--environments"] or 10,
                            f"spread-{time.time_ns()}")
        for _ in range(warmup):
            check(wait_all(api, [api.queue(environments[0])]))
        ids = [api.queue(environments[n % len(environments)]) for n in range(count)]
        print(f"  spread: queued {count} over {len(environments)} environments",
              file=sys.stderr)
        deployments = wait_all(api, ids)
    else:
        sys.exit(f"unknown scenario {scenario!r}")
    check(deployments)
    with open(out, "w") as output:
        json.dump(
            {"scenario": scenario, "environments": len(environments),
             "max_parallel": options["--max-parallel"], "deployments": deployments},
            output,
            indent=1,
        )
    print(f"  {scenario}: {len(deployments)} deployments succeeded -> {out}", file=sys.stderr)


# --- other work on the machine -----------------------------------------------------------

def processes():
    """{pid: (ppid, start ticks, cpu ticks, name)} of every process now."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        # fields[0] is field 3 (state): ppid 4, utime 14, stime 15, starttime 22.
        table[int(entry)] = (int(fields[1]), int(fields[19]), int(fields[11]) + int(fields[12]), name)
    return table


def watch(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    root, out = int(argv[0]), argv[1]
    tick = os.sysconf("SC_CLK_TCK")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))

    def ours(table, pid):
        seen = 0
        while pid > 1 and seen < 64:
            if pid == root:
                return True
            pid = table[pid][0] if pid in table else 0
            seen += 1
        return False

    started = time.monotonic()
    previous, previous_at = processes(), started
    other_ticks, peak, by_name = 0, 0.0, {}
    while not stop:
        time.sleep(0.2)
        now_table, now = processes(), time.monotonic()
        ticks = 0
        for pid, (_, start, cpu, name) in now_table.items():
            if ours(now_table, pid):
                continue
            before = previous.get(pid)
            delta = cpu - before[2] if before and before[1] == start else cpu
            ticks += delta
            by_name[name] = by_name.get(name, 0) + delta
        other_ticks += ticks
        peak = max(peak, ticks / tick / (now - previous_at))
        previous, previous_at = now_table, now
    elapsed = max(time.monotonic() - started, 1e-3)
    top = max(by_name.items(), key=lambda item: item[1], default=("-", 0))
    with open(out, "w") as output:
        output.write(f"{other_ticks / tick / elapsed:.2f} {peak:.2f} {elapsed:.1f} "
                     f"{top[0]}:{top[1] / tick:.1f}s\n")


# --- the statistics ----------------------------------------------------------------------

def seconds(timestamp):
    """RFC 3339 (as chrono writes it, up to nanoseconds) to seconds since the epoch."""
    if timestamp is None:
        return None
    text = timestamp.rstrip("Z")
    offset = 0
    if "+" in text[10:]:
        text, zone = text.rsplit("+", 1)
        hours, minutes = zone.split(":")
        offset = -(int(hours) * 3600 + int(minutes) * 60)
    whole, _, fraction = text.partition(".")
    base = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return base + offset + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def step_started(deployment, name):
    for step in deployment["steps"]:
        if step["name"] == name:
            return seconds(step["started_at"])
    raise RuntimeError(f"deployment {deployment['id']} has no {name} step: {deployment['steps']}")


def step_duration(deployment, name):
    for step in deployment["steps"]:
        if step["name"] == name:
            return seconds(step["finished_at"]) - seconds(step["started_at"])
    return None


def metrics(deployment):
    created = seconds(deployment["created_at"])
    started = seconds(deployment["started_at"])
    finished = seconds(deployment["finished_at"])
    clone = step_started(deployment, "clone")
    init = step_started(deployment, "init")
    plan = step_started(deployment, "plan")
    return {
        "queue_to_dispatch": started - created,
        "queue_to_runner": clone - created,
        "sandbox_to_runner": clone - started,
        "sandbox_to_init": init - started,
        "clone": step_duration(deployment, "clone"),
        "clone_end_to_init": init - (clone + step_duration(deployment, "clone")),
        "init": step_duration(deployment, "init"),
        "plan": step_duration(deployment, "plan"),
        "plan_end_to_finish": finished - (plan + step_duration(deployment, "plan")),
        "total": finished - created,
        "in_sandbox": finished - started,
    }


def idle_gaps(deployments):
    """For each deployment: its start minus the later of its queueing and the last end
    of any deployment before that start. When it waited for a slot or for its
    environment, that end is (at the latest) what freed it: the gap is how long the
    dispatcher took to act on it."""
    ends = sorted(seconds(d["finished_at"]) for d in deployments)
    gaps = []
    for deployment in deployments:
        started = seconds(deployment["started_at"])
        before = [end for end in ends if end <= started]
        freed = max([seconds(deployment["created_at"])] + before[-1:])
        gaps.append(started - freed)
    return gaps


def ready_times(deployments):
    """When each deployment could have started as far as its environment goes: queued,
    and the previous deployment of its environment (in queue order) ended."""
    ready, by_environment = {}, {}
    for d in sorted(deployments, key=lambda d: seconds(d["created_at"])):
        previous = by_environment.get(d["environment_id"])
        ready[d["id"]] = max(
            [seconds(d["created_at"])] + ([seconds(previous["finished_at"])] if previous else [])
        )
        by_environment[d["environment_id"]] = d
    return ready


def slot_waste(deployments, ready, max_parallel):
    """Seconds of sandbox slots left free while a ready deployment waited (summed over
    slots), and the longest stretch with at least one such slot."""
    spans = [(seconds(d["started_at"]), seconds(d["finished_at"])) for d in deployments]
    waits = [(ready[d["id"]], seconds(d["started_at"])) for d in deployments]
    points = sorted({t for span in spans + waits for t in span})
    wasted, longest, stretch = 0.0, 0.0, 0.0
    for start, end in zip(points, points[1:]):
        running = sum(1 for a, b in spans if a <= start < b)
        waiting = sum(1 for a, b in waits if a <= start < b)
        idle = min(max(max_parallel - running, 0), waiting)
        wasted += idle * (end - start)
        stretch = stretch + (end - start) if idle else 0.0
        longest = max(longest, stretch)
    return wasted, longest


def overtakes(deployments, ready):
    """(deployments overtaken, overtakes): a deployment queued later, of another
    environment, started while this one was ready and waiting for a slot."""
    count, overtaken = 0, 0
    for d in deployments:
        started, created = seconds(d["started_at"]), seconds(d["created_at"])
        n = sum(
            1
            for e in deployments
            if e["environment_id"] != d["environment_id"]
            and seconds(e["created_at"]) > created
            and ready[d["id"]] <= seconds(e["started_at"]) < started
        )
        count += n
        overtaken += 1 if n else 0
    return overtaken, count


def summary(values):
    values = sorted(values)
    # p99 over 50 samples: the 'inclusive' quantile interpolates between the two largest.
    return {
        "median": statistics.median(values),
        "p99": statistics.quantiles(values, n=100, method="inclusive")[98],
        "mean": statistics.fmean(values),
        "min": values[0],
        "max": values[-1],
    }


ROWS = [
    ("queue_to_dispatch", "(a) queue → dispatch: `created_at` → `started_at`"),
    ("queue_to_runner", "(b) queue → runner alive: `created_at` → `clone.started_at`"),
    ("sandbox_to_runner", "sandbox start → runner alive: `started_at` → `clone.started_at`"),
    ("sandbox_to_init", "sandbox start → first terraform: `started_at` → `init.started_at`"),
    ("clone", "`clone` step (git clone + checkout)"),
    ("clone_end_to_init", "`clone` end → `init` start (resolve Terraform, backend file)"),
    ("init", "`init` step (`terraform init`, no providers)"),
    ("plan", "`plan` step (`terraform plan` + `show -json`)"),
    ("plan_end_to_finish", "`plan` end → `finished_at` (flush logs, report)"),
    ("in_sandbox", "in the sandbox: `started_at` → `finished_at`"),
    ("total", "**total**: `created_at` → `finished_at`"),
]


def ms(value):
    return f"{value * 1000:,.0f}" if value >= 0.1 else f"{value * 1000:.1f}"


def report_scenario(data):
    deployments = data["deployments"]
    per = [metrics(d) for d in deployments]
    scenario = data["scenario"]
    print(f"#### {scenario}: {len(deployments)} plan-only deployments, "
          f"{data['environments']} environment(s)")
    print()
    print("| interval (ms) | median | p99 | mean | min | max |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rows = list(ROWS)
    ready = ready_times(deployments)
    extra = {}
    if scenario == "spread":
        extra["ready_to_dispatch"] = [
            seconds(d["started_at"]) - ready[d["id"]] for d in deployments
        ]
        extra["idle_gap"] = idle_gaps(deployments)
        rows[1:1] = [
            ("ready_to_dispatch", "ready → dispatch: `started_at` − max(`created_at`, "
             "previous deployment of its environment ended)"),
            ("idle_gap", "dispatch reaction: `started_at` − max(`created_at`, "
             "last end of any deployment before it)"),
        ]
    for name, label in rows:
        values = extra.get(name) or [m[name] for m in per if m[name] is not None]
        s = summary(values)
        print(f"| {label} | {ms(s['median'])} | {ms(s['p99'])} | {ms(s['mean'])} "
              f"| {ms(s['min'])} | {ms(s['max'])} |")
    print()
    created = min(seconds(d["created_at"]) for d in deployments)
    finished = max(seconds(d["finished_at"]) for d in deployments)
    busy = sum(m["in_sandbox"] for m in per)
    makespan = finished - created
    print(f"Makespan {makespan:.1f} s ({len(deployments) / makespan:.2f} deployments/s); "
          f"sandboxes busy {busy:.1f} s in all, on average {busy / makespan:.2f} at once.")
    if scenario == "spread":
        max_parallel = data.get("max_parallel", 4)
        wasted, longest = slot_waste(deployments, ready, max_parallel)
        overtaken, count = overtakes(deployments, ready)
        print()
        print(f"Sandbox slots ({max_parallel}) left free while a ready deployment waited: "
              f"{wasted * 1000:,.0f} slot-ms in all, longest stretch {longest * 1000:,.0f} ms. "
              f"Deployments overtaken while ready by one queued later on another "
              f"environment: {overtaken} of {len(deployments)} ({count} overtakes).")
        order = sorted(deployments, key=lambda d: seconds(d["started_at"]))
        environments = {}
        for d in order:
            environments.setdefault(d["environment_id"], len(environments) + 1)
        sequence = " ".join(str(environments[d["environment_id"]]) for d in order)
        print()
        print("Start order by environment (environments numbered by first start): "
              f"`{sequence}`")
    print()


def report_hyperfine(path):
    data = json.load(open(path))
    print("| command | mean ms | σ ms | median ms | min ms | max ms | runs |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for result in data["results"]:
        print(f"| `{result['command']}` | {result['mean'] * 1000:.2f} "
              f"| {result['stddev'] * 1000:.2f} | {result['median'] * 1000:.2f} "
              f"| {result['min'] * 1000:.2f} | {result['max'] * 1000:.2f} "
              f"| {len(result['times'])} |")
    print()


def report(argv):
    if len(argv) != 1:
        sys.exit(__doc__)
    directory = argv[0]
    names = sorted(os.listdir(directory))
    for scenario in ("sequential", "spread"):
        path = os.path.join(directory, f"{scenario}.deployments.json")
        if os.path.exists(path):
            report_scenario(json.load(open(path)))
    for name in names:
        if name.endswith(".hyperfine.json"):
            print(f"#### hyperfine: {name[:-len('.hyperfine.json')]}")
            print()
            report_hyperfine(os.path.join(directory, name))


def main():
    commands = {"run": run, "watch": watch, "report": report}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
