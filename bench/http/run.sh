#!/usr/bin/env bash
# HTTP hello world on loopback: fiberloop's HttpServer (bench/http/fiberloop_hello.cpp)
# against a hand-written single-threaded epoll responder (bench/http/epoll_hello.cpp),
# the floor for one core. Both send byte-identical responses.
#
#   bash bench/http/run.sh                        wrk -t1 -c64 -d5s, 2 rounds
#   bash bench/http/run.sh -d 10 -c 128 -r 3      duration (s), connections, rounds
#   BUILD_DIR=/tmp/b bash bench/http/run.sh       another build directory
#
# One wrk thread saturates before a good server does on a 2-vCPU machine, so requests/s
# alone would compare wrk with wrk. The script therefore also reports the server's CPU
# time per request: utime+stime of the server process (all its threads, from
# /proc/<pid>/stat) over the measured wrk run, divided by the requests wrk completed.
# Server on CPU 0, wrk on CPU 1 (taskset). The servers alternate, `rounds` times each,
# after a 1 s warm-up per start; the better run of each (most requests/s) is kept.
# Writes bench/results/http.json.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${BUILD_DIR:-$repo/build/bench-http}
results_dir=$repo/bench/results
duration=5 connections=64 rounds=2
while (($#)); do
  case $1 in
    -d) duration=$2; shift 2 ;;
    -c) connections=$2; shift 2 ;;
    -r) rounds=$2; shift 2 ;;
    *) echo "usage: $0 [-d seconds] [-c connections] [-r rounds]" >&2; exit 2 ;;
  esac
done
command -v wrk > /dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

echo "== building (Release) in $build_dir"
generator=()
if [[ ! -f $build_dir/CMakeCache.txt ]] && command -v ninja > /dev/null; then generator=(-G Ninja); fi
cmake -S "$repo" -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DFIBERLOOP_BUILD_TESTS=OFF > /dev/null
# Each target on its own, so a server that does not build yet leaves the other runnable.
for target in epoll_http_hello fiberloop_http_hello; do
  cmake --build "$build_dir" --target "$target" --parallel 2 > "$build_dir/$target.build.log" 2>&1 ||
    echo "   $target did not build (see $build_dir/$target.build.log)"
done

server_pin=() wrk_pin=() placement="unpinned"
if command -v taskset > /dev/null && (($(nproc) > 1)); then
  server_pin=(taskset -c 0) wrk_pin=(taskset -c 1) placement="server on CPU 0, wrk on CPU 1"
fi
echo "== $(nproc) vCPU, $placement; wrk -t1 -c$connections -d${duration}s, $rounds rounds each"
ulimit -n 65536 2> /dev/null || true
clock_ticks=$(getconf CLK_TCK)
source "$repo/bench/scratch.sh"  # $tmp, $server_pid, stop_server

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }  # utime + stime, all threads

# run_one NAME BINARY -> appends "name rps requests cpu_seconds errors" to $tmp/runs
run_one() {
  local name=$1 binary=$2 port= i
  "${server_pin[@]}" "$binary" --port 0 > "$tmp/$name.out" 2> "$tmp/$name.err" &
  server_pid=$!
  for ((i = 0; i < 100; i++)); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/$name.out")
    [[ -n $port ]] && break
    sleep 0.05
  done
  if [[ -z $port ]]; then
    echo "   $name did not start: $(cat "$tmp/$name.err")" >&2
    stop_server
    return
  fi
  local url=http://127.0.0.1:$port/
  "${wrk_pin[@]}" wrk -t1 -c"$connections" -d1s "$url" > /dev/null  # warm-up
  local before after
  before=$(cpu_ticks "$server_pid")
  "${wrk_pin[@]}" wrk -t1 -c"$connections" -d"${duration}s" "$url" > "$tmp/wrk.out"
  after=$(cpu_ticks "$server_pid")
  kill -TERM "$server_pid"
  wait "$server_pid" || echo "   $name exited with status $? on SIGTERM" >&2
  server_pid=
  local requests rps errors
  requests=$(awk '/requests in/ { print $1 }' "$tmp/wrk.out")
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk.out")
  # Socket errors and non-2xx responses both count: a fast wrong server is not fast.
  errors=$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 } /Non-2xx/ { s += $NF } END { print s + 0 }' "$tmp/wrk.out")
  local cpu=$(((after - before)))
  echo "$name $rps $requests $(awk -v t="$cpu" -v hz="$clock_ticks" 'BEGIN { print t / hz }') $errors" >> "$tmp/runs"
  printf '   %-10s round %d: %10s req/s, %s requests, server CPU %ss, errors %s\n' "$name" "$round" "$rps" \
    "$requests" "$(awk -v t="$cpu" -v hz="$clock_ticks" 'BEGIN { print t / hz }')" "$errors"
}

declare -A binaries=([epoll]="$build_dir/bench/epoll_http_hello" [fiberloop]="$build_dir/bench/fiberloop_http_hello")
: > "$tmp/runs"
for ((round = 1; round <= rounds; round++)); do
  for name in epoll fiberloop; do
    if [[ -x ${binaries[$name]} ]]; then run_one "$name" "${binaries[$name]}"; fi
  done
done

mkdir -p "$results_dir"
python3 - "$tmp/runs" "$results_dir/http.json" "$connections" "$duration" "$placement" << 'PY'
import json, sys, datetime
runs_file, out, connections, duration, placement = sys.argv[1:6]
best = {}
for line in open(runs_file):
    name, rps, requests, cpu, errors = line.split()
    run = {"requests_per_s": float(rps), "requests": int(requests), "server_cpu_s": float(cpu),
           "errors": int(errors)}
    run["cpu_us_per_request"] = run["server_cpu_s"] / run["requests"] * 1e6 if run["requests"] else None
    if name not in best or run["requests_per_s"] > best[name]["requests_per_s"]:
        best[name] = run

def row(name, label):
    r = best.get(name)
    if not r:
        return f"| {label} | not built | — | — | — |"
    return (f"| {label} | {r['requests_per_s']:,.0f} | {r['cpu_us_per_request']:.2f} | "
            f"{r['server_cpu_s'] / float(duration) * 100:.0f} % | {r['errors']} |")

print()
print(f"| server | requests/s | server CPU µs/request | server CPU load | errors |")
print("|---|---:|---:|---:|---:|")
print(row("epoll", "hand-written epoll (floor)"))
print(row("fiberloop", "fiberloop HttpServer"))
verdict = {}
e, f = best.get("epoll"), best.get("fiberloop")
print()
if e and f and e["requests_per_s"] and e["cpu_us_per_request"]:
    rps_ratio = f["requests_per_s"] / e["requests_per_s"]
    cpu_ratio = f["cpu_us_per_request"] / e["cpu_us_per_request"]
    verdict = {"rps_ratio": rps_ratio, "rps_target": 0.8, "rps_met": rps_ratio >= 0.8,
               "cpu_ratio": cpu_ratio, "cpu_target": 1.25, "cpu_met": cpu_ratio <= 1.25}
    print("| ratio fiberloop / epoll | value | target | |")
    print("|---|---:|---:|---|")
    print(f"| requests/s | {rps_ratio:.2f}x | >= 0.80x | {'met' if verdict['rps_met'] else 'MISSED'} |")
    print(f"| server CPU per request | {cpu_ratio:.2f}x | <= 1.25x | {'met' if verdict['cpu_met'] else 'MISSED'} |")
else:
    print("ratios: need both servers (one is not built or did not run)")
print()
print(f"wrk -t1 -c{connections} -d{duration}s on loopback, {placement}; best of the rounds by requests/s.")
print("CPU = utime+stime of the server process over the wrk run (clock-tick resolution).")
json.dump({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "wrk": {"threads": 1, "connections": int(connections), "duration_s": float(duration)},
           "placement": placement, "servers": best, "ratios": verdict}, open(out, "w"), indent=2)
print(f"JSON: {out}")
PY
