#!/usr/bin/env bash
# Memory (issue 7): `bash bench/memory.sh`. The goal: the poller's RSS grows by ≤ 256 KiB per
# build tracked at once (1 → 100 → 1,000 builds), whatever the log size.
#
# What is measured, and what "the poller's RSS" is here: the poller runs alone in its own process
# (bench/src/bin/memory-poller.rs: the `poller` Lambda's wiring, settings from the environment,
# fed by the local gateway's SQS event source mapping and schedule). The API, the webhook sinks,
# the Jenkins stand-in (which keeps every build's whole log) and the AWS emulator are other
# processes, so VmRSS of that process is the poller's own — runtime, AWS/HTTP clients and the
# state of the builds it holds. Its mapping runs up to MEMORY_POLLER_CONCURRENCY (default 100)
# invocations of ≤ 10 messages at once, so all of 1,000 builds can be in a poll at the same time;
# the local gateway of `make run` runs 4 (≤ 40 builds in a poll, the rest wait in the queue).
#
# Each step (bench/src/bin/memory.rs) uses fresh resources, a fresh stand-in and a fresh poller:
# submits N v2 builds (one status and one log webhook each, to HTTP sinks that count and drop),
# waits until every build is `building` (the stand-in's builds last: each simulated Docker step
# takes 30 min), then appends text to every build's log at an even rate, waits a warm-up
# (MEMORY_WARMUP_S, default 25: longer than one LOG_WINDOW, so every build has had a poll with its
# log flowing), then reads VmRSS of the poller every second for MEMORY_SAMPLE_S (default 30): the
# step's RSS is the median of those samples. The run's RSS for N is the median over MEMORY_RUNS
# runs (default 1: a 1,000-build step takes minutes on moto). Baseline: the 1-build RSS of the
# same run; growth per added build = ΔRSS / Δbuilds, 1→100 and 100→1,000. "In a poll" is the
# median of the poll queue's ApproximateNumberOfMessagesNotVisible while sampling: the builds the
# poller holds (approximate, an upper bound: moto may count a delayed next-round message too).
# Against moto, the mapping's one ReceiveMessage at a time cannot keep 1,000 builds in a poll:
# a measured run had ≈ 120-140 of 1,000 in a poll, the rest visible in the queue, so the
# 100→1,000 growth is mostly per tracked build, not per build held: read both columns.
# Variants: "small" logs (MEMORY_SMALL_LOG_KIB per build over the flow, default 64) and "large"
# logs (MEMORY_LARGE_LOG_MIB per build, default 4: four archive chunks of 1 MiB, far more than
# any stream buffer). The large variant runs MEMORY_LARGE_BUILDS (default "1 100"): at 1,000
# builds it would push 4 GB through the stand-in and moto in under a minute, which 2 shared
# cores cannot.
#
# An empty MEMORY_BUILDS or MEMORY_LARGE_BUILDS skips that variant.
# Settings (environment): POLL_INTERVAL (default 2s) and LOG_WINDOW (default 20s), the product's
# defaults; MEMORY_BUILDS (default "1 100 1000"); MEMORY_PROFILE (debug, as `make run`, or
# release). Builds with `cargo build` (honours CARGO_TARGET_DIR). Prints a markdown table. Exits
# non-zero when a step fails; the goal missed is reported in the table, not by the exit status.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../infra/local/env.sh"

profile="${MEMORY_PROFILE:-debug}"
target="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
small_builds="${MEMORY_BUILDS-1 100 1000}"
large_builds="${MEMORY_LARGE_BUILDS-1 100}"
runs="${MEMORY_RUNS:-1}"
small_bytes=$((${MEMORY_SMALL_LOG_KIB:-64} * 1024))
large_bytes=$((${MEMORY_LARGE_LOG_MIB:-4} * 1024 * 1024))
export POLL_INTERVAL="${POLL_INTERVAL:-2s}" LOG_WINDOW="${LOG_WINDOW:-20s}"
# The poller's malloc setting as template.yaml gives the function (its processes inherit it);
# MEMORY_MALLOC=default measures glibc's own behaviour instead.
if [ "${MEMORY_MALLOC:-template}" = default ]; then
  unset MALLOC_MMAP_THRESHOLD_
else
  MALLOC_MMAP_THRESHOLD_="$(template_malloc_threshold)"
  export MALLOC_MMAP_THRESHOLD_
fi
release_flag=()
[ "$profile" = release ] && release_flag=(--release)

ensure_venv
cargo build --quiet "${release_flag[@]}" --bin memory --bin memory-poller --bin jenkins-standin
# A copy of this build: a shared CARGO_TARGET_DIR may get another checkout's binary meanwhile.
bin="$STATE_DIR/memory-bin"
mkdir -p "$bin"
cp "$target/$profile/memory" "$target/$profile/memory-poller" "$target/$profile/jenkins-standin" "$bin/"

trap stop_moto EXIT INT TERM
start_moto "$(free_port)"
results="$STATE_DIR/memory-results-$$.txt"
: >"$results"
log "$profile build; POLL_INTERVAL=$POLL_INTERVAL LOG_WINDOW=$LOG_WINDOW MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-unset}; $runs run(s); results in $results"

step() { # variant builds log-bytes run
  local variant="$1" builds="$2" bytes="$3" run="$4" out
  log "run $run, $variant logs, $builds builds ($((bytes / 1024)) KiB of log per build)"
  out="$STATE_DIR/memory-$variant-$builds-$run.log"
  MEMORY_POLLER_LOG="$STATE_DIR/memory-poller-$variant-$builds-$run.log" \
    "$bin/memory" --builds "$builds" --log-bytes "$bytes" --standin-bin "$bin/jenkins-standin" --poller-bin "$bin/memory-poller" \
    --warmup-s "${MEMORY_WARMUP_S:-25}" --sample-s "${MEMORY_SAMPLE_S:-30}" --deadline-s "${MEMORY_DEADLINE_S:-900}" | tee "$out" >&2
  grep '^memory-result ' "$out" | sed "s/^memory-result /variant=$variant log_bytes=$bytes /" >>"$results"
}

for run in $(seq 1 "$runs"); do
  for n in $small_builds; do step small "$n" "$small_bytes" "$run"; done
  for n in $large_builds; do step large "$n" "$large_bytes" "$run"; done
done

# The table: per variant and N, the median RSS over the runs; growth against the previous N.
python3 - "$results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    fields = dict(part.split("=", 1) for part in line.split())
    row = rows.setdefault((fields["variant"], int(fields["builds"])), {"rss": [], "in_poll": [], "log": int(fields["log_bytes"])})
    row["rss"].append(int(fields["rss_kib"]))
    row["in_poll"].append(int(fields.get("in_poll", -1)))  # -1: not counted
GOAL = 256
print("| logs | builds tracked | in a poll (median) | poller RSS (MiB) | growth per added build (KiB) | per added build in a poll (KiB) | goal | met |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
for variant in ("small", "large"):
    previous = None
    for (v, n), row in sorted(rows.items()):
        if v != variant:
            continue
        rss, in_poll = statistics.median(row["rss"]), statistics.median(row["in_poll"])
        size = f'{row["log"] // 1024} KiB' if row["log"] < 1 << 20 else f'{row["log"] / (1 << 20):g} MiB'
        label = f"{variant}, {size}/build"
        if previous is None:
            growth, polled, goal, met = "baseline", "", "", ""
        else:
            per_build = (rss - previous[1]) / (n - previous[0])
            growth, goal, met = f"{per_build:.1f} ({previous[0]}→{n})", f"≤ {GOAL}", "yes" if per_build <= GOAL else "NO"
            polled = f"{(rss - previous[1]) / (in_poll - previous[2]):.1f}" if in_poll > previous[2] >= 0 else "–"
        print(f"| {label} | {n} | {in_poll:g} | {rss / 1024:.1f} | {growth} | {polled} | {goal} | {met} |")
        previous = (n, rss, in_poll)
EOF
