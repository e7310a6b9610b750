#!/usr/bin/env bash
# Core micro-benchmarks (bench/core_benchmark.cpp): fiberloop's per-operation costs
# next to raw Boost.Context, plain Boost.Fiber and std::thread.
#
#   bash bench/run_core.sh                                  build (Release), run, tabulate
#   BUILD_DIR=/tmp/b bash bench/run_core.sh                 another build directory
#   bash bench/run_core.sh --benchmark_filter=Fiberloop     extra flags go to the binary
#
# Writes bench/results/core.json (Google Benchmark JSON) and prints a Markdown table
# of the medians of 3 repetitions. The whole process is pinned to CPU 1: on a 2-vCPU
# VM a wakeup across CPUs costs ~25 µs and timings swing ~30% between runs, so even
# pinned, compare numbers from the same run (the table does) rather than across runs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${BUILD_DIR:-$repo/build/bench-core}
results_dir=$repo/bench/results
json=$results_dir/core.json

echo "== building fiberloop_core_bench (Release) in $build_dir"
generator=()
if [[ ! -f $build_dir/CMakeCache.txt ]] && command -v ninja > /dev/null; then generator=(-G Ninja); fi
cmake -S "$repo" -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DFIBERLOOP_BUILD_TESTS=OFF > /dev/null
cmake --build "$build_dir" --target fiberloop_core_bench --parallel 2 > /dev/null

pin=()
if command -v taskset > /dev/null && (($(nproc) > 1)); then pin=(taskset -c 1); fi
mkdir -p "$results_dir"
if ((${#pin[@]})); then echo "== running, pinned to CPU 1"; else echo "== running, unpinned"; fi
"${pin[@]}" "$build_dir/bench/fiberloop_core_bench" \
  --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_out="$json" --benchmark_out_format=json "$@"
echo "== JSON: $json"
echo

python3 - "$json" << 'EOF'
import json
import sys

data = json.load(open(sys.argv[1]))

# name -> (ns per op, coefficient of variation or None, error or None)
runs = {}
iterations = {}
for b in data["benchmarks"]:
    name = b.get("run_name", b["name"])
    if b.get("error_occurred"):
        runs[name] = (None, None, b.get("error_message", "error"))
        continue
    if "time_per_op" not in b:
        continue
    if b.get("run_type") == "aggregate":
        if b.get("aggregate_name") == "median":
            prev = runs.get(name, (None, None, None))
            runs[name] = (b["time_per_op"] * 1e9, prev[1], None)
        elif b.get("aggregate_name") == "cv":
            prev = runs.get(name, (None, None, None))
            runs[name] = (prev[0], b["time_per_op"], None)
    else:
        iterations.setdefault(name, []).append(b["time_per_op"] * 1e9)
for name, values in iterations.items():  # no repetitions: the mean of the runs
    if name not in runs:
        runs[name] = (sum(values) / len(values), None, None)


def ns(name):
    return runs.get(name, (None, None, None))


def fmt(value):
    if value is None:
        return "n/a"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def cell(name):
    value, cv, error = ns(name)
    if error:
        return f"error: {error}"
    text = fmt(value)
    if value is not None and cv is not None:
        text += f" (±{cv * 100:.0f}%)"
    return text


# operation, fiberloop benchmark, [(floor label, floor benchmark)], target (op, ns) or None, note
rows = [
    ("wait_for_future suspend+resume, future completed by a loop callback (round trip)",
     "BM_Fiberloop_WaitLoopCompleted",
     [("raw ctx resume pair", "BM_RawContext_ResumePair"),
      ("BF promise/future round trip", "BM_BoostFiber_PromiseRoundTrip")],
     ("<=", 250)),
    ("spawn-to-finish, empty fiber, batch of 256, warm pooled stacks (guard pages)",
     "BM_Fiberloop_SpawnBatch/256",
     [("raw ctx create+finish, pooled stack", "BM_RawContext_CreateFinish_Pooled"),
      ("BF create+join, batch of 256, pooled", "BM_BoostFiber_CreateJoinBatch/256")],
     ("<=", 300)),
    ("spawn one empty fiber + wait for it (adds the waiter's suspend+resume)",
     "BM_Fiberloop_SpawnOneAndWait",
     [("raw ctx create+finish, pooled stack", "BM_RawContext_CreateFinish_Pooled"),
      ("BF create+join, pooled", "BM_BoostFiber_CreateJoin")],
     None),
    ("wait_for_future on a done future",
     "BM_Fiberloop_WaitDone",
     [("BF shared_future::get() on a ready future", "BM_BoostFiber_ReadyFutureGet")],
     ("<", 20)),
    ("wait_for_future round trip as above, blocking-call watchdog on (threshold 100 ms)",
     "BM_Fiberloop_WaitLoopCompletedWatchdog", [("same, watchdog off", "BM_Fiberloop_WaitLoopCompleted")], None),
    ("wait_for_future round trip as above, under three stack contexts (handler + 2 ContextLocal values)",
     "BM_Fiberloop_WaitLoopCompletedInContexts", [], None),
    ("add_callback + run it (batches of 1000, per callback)", "BM_Fiberloop_AddCallback/1000", [], None),
    ("add_callback + run it, under three stack contexts (captured, re-entered per callback)",
     "BM_Fiberloop_AddCallbackInContexts/1000", [], None),
    ("stack context: ContextLocal set + get + scope end", "BM_StackContext_LocalSetGet", [], None),
    ("stack context: ExceptionStackContext made and ended", "BM_StackContext_ExceptionContext", [], None),
    ("stack context: call a wrap()ped function (re-enters three contexts)", "BM_StackContext_WrappedCall", [], None),
    ("call_later + remove_timeout, no other timers", "BM_Fiberloop_TimerAddRemove/0", [], None),
    ("call_later + remove_timeout, 1000 timers pending", "BM_Fiberloop_TimerAddRemove/1000", [], None),
    ("cross-thread: another thread completes the promise, fiber resumes (round trip, wall time)",
     "BM_Fiberloop_WaitCrossThread/real_time",
     [("BF cross-thread promise round trip", "BM_BoostFiber_WaitCrossThread/real_time")],
     None),
    ("reference: Boost.Fiber this_fiber::yield round trip (2 fibers, round_robin)", None,
     [("BF yield round trip", "BM_BoostFiber_YieldRoundTrip")], None),
    ("reference: raw ctx create+finish, protected_fixedsize_stack (mmap+mprotect+munmap per fiber)", None,
     [("raw ctx create+finish, protected", "BM_RawContext_CreateFinish_Protected")], None),
    ("reference: std::thread create+join (wall time)", None,
     [("std::thread", "BM_StdThread_CreateJoin/real_time")], None),
]

print("| operation | fiberloop ns | floor (raw Boost.Context / Boost.Fiber) ns | ratio | target |")
print("|---|---:|---|---:|---|")
verdicts = []
for op, fl_name, floors, target in rows:
    fl_value = ns(fl_name)[0] if fl_name else None
    floor_text = "<br>".join(f"{label}: {cell(name)}" for label, name in floors) or "—"
    ratios = []
    for _, name in floors:
        floor_value = ns(name)[0]
        if fl_value is not None and floor_value:
            ratios.append(f"×{fl_value / floor_value:.1f}")
    ratio_text = " / ".join(ratios) if ratios else "—"
    if target:
        rel, limit = target
        target_text = f"{'≤' if rel == '<=' else '<'} {limit} ns"
        if fl_value is None:
            target_text += ": no result"
        else:
            met = fl_value <= limit if rel == "<=" else fl_value < limit
            target_text += ": **met**" if met else ": **MISSED**"
            verdicts.append((op, met))
    else:
        target_text = "—"
    print(f"| {op} | {cell(fl_name) if fl_name else '—'} | {floor_text} | {ratio_text} | {target_text} |")

watchdog_on, watchdog_off = ns("BM_Fiberloop_WaitLoopCompletedWatchdog")[0], ns("BM_Fiberloop_WaitLoopCompleted")[0]
if watchdog_on and watchdog_off:
    print()
    print(f"Blocking-call watchdog on the wait_for_future round trip: {(watchdog_on / watchdog_off - 1) * 100:+.1f} % "
          "(issue 12's budget: 5 %).")

print()
print("ns per operation, median of 3 repetitions (± = coefficient of variation across them);")
print("CPU time of the timed thread, wall time for the cross-thread and std::thread rows.")
print("BF = plain Boost.Fiber (round_robin) on its own OS thread. Ratio = fiberloop / floor.")
ctx = data.get("context", {})
print(f"Machine: {ctx.get('num_cpus', '?')} CPUs at {ctx.get('mhz_per_cpu', '?')} MHz; run {ctx.get('date', '?')}.")
if ctx.get("library_build_type") == "debug":
    print("(Google Benchmark's own library is Debian's debug build: its timed loop is inline in its")
    print("header, so the per-iteration overhead is compiled Release with this binary.)")
EOF
