#!/usr/bin/env bash
# Connector/C's two ways to wait from a fiber, measured (docs/sql.md, "MariaDB: how a
# fiber waits on Connector/C"): a private MariaDB on CPU 0, mariadb_wait_ways on CPU 1
# (taskset), point selects with 1 and 100 fibers, the hook and the non-blocking API
# alternating within each round. Prints every run and, per configuration, the median
# and range over the rounds of queries/s, p50, p99 and CPU per query. With --callgrind,
# also user-space instructions per query (callgrind over the query window only: three
# runs each, independent of the machine's load; needs valgrind).
#
#   bash bench/sql/wait_ways.sh [-r ROUNDS] [-s SECONDS] [--callgrind]   5 rounds of 3 s
#   BUILD_DIR=/tmp/b bash bench/sql/wait_ways.sh                         another build
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=${BUILD_DIR:-$repo/build/release}
rounds=5 seconds=3 callgrind=0
while (($#)); do
  case $1 in
    -r) rounds=$2; shift 2 ;;
    -s) seconds=$2; shift 2 ;;
    --callgrind) callgrind=1; shift ;;
    *) echo "usage: $0 [-r ROUNDS] [-s SECONDS] [--callgrind]" >&2; exit 2 ;;
  esac
done
bin=$build_dir/bench/fiberloop_mariadb_wait_ways
[[ -x $bin ]] || cmake --build "$build_dir" --target fiberloop_mariadb_wait_ways > /dev/null
source "$repo/bench/scratch.sh"     # $tmp, $server_pid, stop_server
source "$repo/bench/sql/mariadb.sh"  # start_mariadb, mariadb_sql
start_mariadb taskset -c 0
mariadb_sql "USE bench; CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(64), qty BIGINT);
  INSERT INTO items SELECT seq, CONCAT('item-', seq), seq * 7 FROM seq_1_to_10000;" ||
  { echo "could not create bench.items" >&2; exit 1; }

client=(taskset -c 1 "$bin")
args=("$mariadb_port" bench bench bench)
echo "== $rounds rounds of $seconds s; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= rounds; r++)); do
  for fibers in 1 100; do
    for way in hook nonblocking; do "${client[@]}" $way "${args[@]}" $fibers "$seconds" | tee -a "$tmp/runs.txt"; done
  done
done
python3 - "$tmp/runs.txt" << 'EOF'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r'(\w+) fibers=(\d+) queries=\d+ qps=(\d+) p50=([\d.]+)us p99=([\d.]+)us cpu/query=([\d.]+)us', line)
    if m:
        runs.setdefault((int(m[2]), m[1]), []).append([float(x) for x in m.groups()[2:]])
print('== median [min..max] over the rounds')
for (fibers, way), rows in sorted(runs.items()):
    cells = []
    for i, (name, fmt) in enumerate([('queries/s', '%.0f'), ('p50 us', '%.0f'), ('p99 us', '%.0f'), ('CPU/query us', '%.1f')]):
        xs = sorted(row[i] for row in rows)
        cells.append(f"{name} {fmt % statistics.median(xs)} [{fmt % xs[0]}..{fmt % xs[-1]}]")
    print(f"{fibers:3d} fibers {way:11s} " + '  '.join(cells))
EOF
if ((callgrind)); then
  echo "== user-space instructions per query (callgrind, 3 runs each)"
  for fibers in 1 100; do
    for way in hook nonblocking; do
      counts=()
      for _ in 1 2 3; do
        line=$(taskset -c 1 valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$tmp/cg.out" \
                 "$bin" $way "${args[@]}" $fibers 5 2> "$tmp/cg.err")
        queries=$(grep -oP 'queries=\K\d+' <<< "$line")
        ir=$(grep -oP 'Collected : \K\d+' "$tmp/cg.err")
        counts+=($((ir / queries)))
      done
      echo "$fibers fibers $way: ${counts[*]}"
    done
  done
fi
