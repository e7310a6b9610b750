#!/usr/bin/env bash
# Gets per second and client CPU per get against one real memcached: MemcacheClient
# from one IOLoop with 100 and 1 000 fibers, against libmemcached used thread-per-request
# with as many threads (each its own memcached_st, blocking gets), in the same run; and
# Debian's memcslap (libmemcached-tools) as an outside reference. memcached on CPU 0,
# the client on CPU 1 (taskset). Rounds alternate which client goes first. Prints the
# table (medians, min–max over rounds, the ratios per round), writes
# bench/results/memcache.csv, exits non-zero when a target is missed.
# Targets, at 1 000 requesters: MemcacheClient at least 2x libmemcached-with-threads'
# gets/s at no more than half its CPU per get (medians of the per-round ratios).
#
#   bash bench/memcache/run.sh [-r ROUNDS] [-s SECONDS]   3 rounds of 5 s points by default
#   bash bench/memcache/run.sh --smoke --bin-dir DIR      the test suite's run (see below)
#   BUILD_DIR=/tmp/b bash bench/memcache/run.sh           another build directory
#
# --smoke (a test of the Release pass): one round of 1 s points; asserts that every
# point ran, every cell is filled and no get failed. It measures nothing.
#
# memcached runs with -c 4096 (1 000 thread connections + memcslap's 1 000 would pass
# its default 1 024) and its default 4 worker threads; the client with ulimit -n 4096.
# The 1 000 libmemcached threads get 256 KiB stacks (memcache_bench --stack-kib).
# memcslap's CPU is its whole run (bash `time`: loading its keys and starting its
# threads included), so its CPU per get is an upper bound.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${BUILD_DIR:-$repo/build/bench-memcache}
bin_dir=
rounds=3 seconds=5 warmup=1 smoke=0
csv=$repo/bench/results/memcache.csv
concurrencies=(100 1000)
while (($#)); do
  case $1 in
    -r) rounds=$2; shift 2 ;;
    -s) seconds=$2; shift 2 ;;
    --smoke) smoke=1 rounds=1 seconds=1 warmup=0.2; shift ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    *) echo "usage: $0 [-r ROUNDS] [-s SECONDS] [--smoke] [--bin-dir DIR]" >&2; exit 2 ;;
  esac
done
for tool in memcached memcslap; do
  command -v $tool > /dev/null || { echo "$tool is missing: apt-get install memcached libmemcached-tools" >&2; exit 1; }
done

if [[ -z $bin_dir ]]; then
  echo "== building (Release) in $build_dir"
  generator=()
  if [[ ! -f $build_dir/CMakeCache.txt ]] && command -v ninja > /dev/null; then generator=(-G Ninja); fi
  cmake -S "$repo" -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DFIBERLOOP_BUILD_TESTS=OFF > /dev/null
  cmake --build "$build_dir" --target fiberloop_memcache_bench --parallel 2 > "$build_dir/memcache.build.log" 2>&1 ||
    { tail -n 40 "$build_dir/memcache.build.log"; exit 1; }
  bin_dir=$build_dir/bench
fi
bench=$bin_dir/fiberloop_memcache_bench

server_pin=() client_pin=() placement="unpinned"
if command -v taskset > /dev/null && (($(nproc) > 1)); then
  server_pin=(taskset -c 0) client_pin=(taskset -c 1) placement="memcached on CPU 0, client on CPU 1"
fi
ulimit -n 4096 2> /dev/null || true
echo "== $(nproc) vCPU, $placement; ulimit -n $(ulimit -n), -u $(ulimit -u); load average $(cut -d' ' -f1-3 /proc/loadavg)"

source "$repo/bench/scratch.sh"  # $tmp, $server_pid, stop_server

# A free port: try random ones until memcached stays up and answers a connect.
user=()
((EUID == 0)) && user=(-u root)
port=
for ((attempt = 0; attempt < 20; attempt++)); do
  [[ -n $port ]] && break
  candidate=$((20000 + RANDOM % 40000))
  "${server_pin[@]}" memcached "${user[@]}" -l 127.0.0.1 -p "$candidate" -U 0 -c 4096 -m 64 2> "$tmp/memcached.err" &
  server_pid=$!
  for ((i = 0; i < 50; i++)); do
    if ! kill -0 "$server_pid" 2> /dev/null; then server_pid=; break; fi
    if (exec 3<> "/dev/tcp/127.0.0.1/$candidate") 2> /dev/null; then port=$candidate; break; fi
    sleep 0.05
  done
  if [[ -z $port ]]; then stop_server; fi
done
[[ -n $port ]] || { echo "memcached did not start: $(cat "$tmp/memcached.err")" >&2; exit 1; }
server=127.0.0.1:$port
echo "== memcached $(memcached -V | cut -d' ' -f2) on $server (-c 4096, 4 threads); memcslap from libmemcached $(memcslap -V 2>&1 | sed -n 's/.*libmemcached v\([0-9.]*\).*/\1/p')"
echo "== $rounds round(s) of ${seconds} s points (after ${warmup} s warm-up) at ${concurrencies[*]} requesters"

rows=$tmp/rows.csv
echo "round,client,concurrency,seconds,gets,gets_per_s,cpu_s,cpu_us_per_get,errors" > "$rows"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p;s/^$1=\([^ ]*\).*/\1/p" <<< "$2" | head -n 1; }

run_client() {  # round client concurrency
  local line
  line=$("${client_pin[@]}" "$bench" --client "$2" --concurrency "$3" --server "$server" \
    --seconds "$seconds" --warmup "$warmup") || { echo "memcache_bench --client $2 --concurrency $3 failed" >&2; exit 1; }
  echo "   $line"
  echo "$1,$2,$3,$(field seconds "$line"),$(field gets "$line"),$(field gets_per_s "$line"),$(field cpu_s "$line"),$(field cpu_us_per_get "$line"),$(field errors "$line")" >> "$rows"
}

# memcslap runs a fixed number of gets (-e keys, each thread gets all of them): sized
# from the libmemcached point just measured so that it lasts about as long.
run_memcslap() {  # round concurrency
  local estimate per_thread out cpu took gets
  estimate=$(awk -F, -v r="$1" -v c="$2" '$1 == r && $2 == "libmemcached" && $3 == c { print $6 }' "$rows")
  per_thread=$(awk -v e="$estimate" -v s="$seconds" -v c="$2" 'BEGIN { n = int(e * s / c); print (n < 1 ? 1 : n) }')
  out=$tmp/memcslap.out
  cpu=$( { TIMEFORMAT='%U %S'; time "${client_pin[@]}" memcslap -s "$server" -c "$2" -e "$per_thread" -t get > "$out" 2>&1; } 2>&1 ) ||
    { echo "memcslap failed: $(cat "$out")" >&2; exit 1; }
  took=$(sed -n 's/^Time to get *\([0-9]*\) keys by *[0-9]* threads: *\([0-9.]*\) seconds.*/\1 \2/p' "$out")
  [[ -n $took ]] || { echo "memcslap printed no get time: $(cat "$out")" >&2; exit 1; }
  read -r gets took <<< "$took"
  local gets_per_s cpu_s cpu_us
  read -r gets_per_s cpu_s cpu_us < <(awk -v g="$gets" -v t="$took" -v cpu="$cpu" \
    'BEGIN { split(cpu, u, " "); s = u[1] + u[2]; printf "%.0f %.3f %.3f\n", g / t, s, s * 1e6 / g }')
  echo "   client=memcslap concurrency=$2 seconds=$took gets=$gets gets_per_s=$gets_per_s cpu_s=$cpu_s (whole run) cpu_us_per_get=$cpu_us"
  # memcslap counts no failed gets: a failure fails its run, checked above.
  echo "$1,memcslap,$2,$took,$gets,$gets_per_s,$cpu_s,$cpu_us,0" >> "$rows"
}

for ((round = 1; round <= rounds; round++)); do
  order=(fiberloop libmemcached)
  ((round % 2 == 0)) && order=(libmemcached fiberloop)
  for concurrency in "${concurrencies[@]}"; do
    echo "-- round $round, $concurrency requesters (load $(cut -d' ' -f1 /proc/loadavg))"
    for client in "${order[@]}"; do run_client "$round" "$client" "$concurrency"; done
    run_memcslap "$round" "$concurrency"
  done
done

if ((smoke)); then
  # Every point ran and filled every cell; no get failed.
  expected=$((${#concurrencies[@]} * 3))
  awk -F, -v expected="$expected" '
    NR == 1 { next }
    { n++; for (i = 1; i <= 9; i++) if ($i == "") { print "empty cell " i " in: " $0; bad = 1 }
      if ($5 + 0 <= 0) { print "no gets in: " $0; bad = 1 }
      if ($9 != "0") { print "errors in: " $0; bad = 1 } }
    END { if (n != expected) { print n " rows, expected " expected; bad = 1 } exit bad }' "$rows"
  echo "smoke run: $expected points, every cell filled, no errors"
  exit 0
fi

mkdir -p "$(dirname "$csv")"
cp "$rows" "$csv"
echo
echo "== $(nproc) vCPU, $placement, load average now $(cut -d' ' -f1-3 /proc/loadavg); medians over $rounds round(s), (min–max)"
awk -F, -v rounds="$rounds" '
  function sort(a, n,   i, j, t) { for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t } }
  function median(a, n) { sort(a, n); return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  function spread(a, n, fmt) { sort(a, n); return sprintf("(" fmt "–" fmt ")", a[1], a[n]) }
  NR == 1 { next }
  { key = $2 SUBSEP $3; n[key]++; gps[key, n[key]] = $6; cpu[key, n[key]] = $8; err[key] += $9
    seen[$3] = 1; value[$1, $2, $3, "gps"] = $6; value[$1, $2, $3, "cpu"] = $8 }
  END {
    printf "| requesters | client | gets/s | client CPU per get | errors |\n|---:|---|---:|---:|---:|\n"
    status = 0
    for (c = 100; c <= 1000; c *= 10) {
      if (!(c in seen)) continue
      split("fiberloop libmemcached memcslap", clients, " ")
      for (k = 1; k <= 3; k++) {
        key = clients[k] SUBSEP c; m = n[key]
        for (i = 1; i <= m; i++) { g[i] = gps[key, i]; u[i] = cpu[key, i] }
        label = clients[k] == "fiberloop" ? "MemcacheClient, " c " fibers, one loop" : clients[k] == "libmemcached" ? "libmemcached, " c " threads" : "memcslap -c " c " (reference)"
        printf "| %d | %s | %.0f %s | %.2f µs %s | %d |\n", c, label, median(g, m), spread(g, m, "%.0f"), median(u, m), spread(u, m, "%.2f"), err[key]
      }
      for (r = 1; r <= rounds; r++) {
        rg[r] = value[r, "fiberloop", c, "gps"] / value[r, "libmemcached", c, "gps"]
        rc[r] = value[r, "fiberloop", c, "cpu"] / value[r, "libmemcached", c, "cpu"]
      }
      mg = median(rg, rounds); mc = median(rc, rounds)
      if (c == 1000) {
        verdict = sprintf("targets at 1000 requesters: gets/s ≥ 2× libmemcached: %s (%.2f×); CPU per get ≤ 0.5×: %s (%.2f×)",
                          mg >= 2 ? "met" : "MISSED", mg, mc <= 0.5 ? "met" : "MISSED", mc)
        if (mg < 2 || mc > 0.5) status = 1
      }
      printf "| %d | **MemcacheClient ÷ libmemcached** | **%.2f×** %s | **%.2f×** %s | |\n", c, mg, spread(rg, rounds, "%.2f"), mc, spread(rc, rounds, "%.2f")
    }
    for (key in err) if (err[key] > 0) { verdict = verdict "\nerrors: some gets failed"; status = 1; break }
    print ""; print verdict
    exit status
  }' "$rows" || status=$?
echo "wrote $csv"
exit "${status:-0}"
