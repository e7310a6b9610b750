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
export PATH=$PATH:/usr/sbin
for tool in mariadb-install-db mariadbd mariadb; do
  command -v $tool > /dev/null || { echo "$tool is missing: apt-get install mariadb-server" >&2; exit 1; }
done

source "$repo/bench/scratch.sh"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
small=(--innodb-buffer-pool-size=64M --skip-log-bin --skip-name-resolve --performance-schema=OFF)
mariadb-install-db --no-defaults --datadir="$tmp/data" --auth-root-authentication-method=normal --skip-test-db \
  "${small[@]}" > "$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
taskset -c 0 mariadbd --no-defaults --user=root --datadir="$tmp/data" --socket="$tmp/sock" --port="$port" \
  --bind-address=127.0.0.1 --max-connections=500 "${small[@]}" > "$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 600); do
  mariadb --no-defaults -S "$tmp/sock" -uroot -e 'SELECT 1' > /dev/null 2>&1 && break
  sleep 0.05
done
mariadb --no-defaults -S "$tmp/sock" -uroot -e "
  CREATE DATABASE bench; CREATE USER 'bench'@'%' IDENTIFIED BY 'benchpw'; GRANT ALL ON bench.* TO 'bench'@'%';
  CREATE TABLE bench.items (id INT PRIMARY KEY, name VARCHAR(64), qty BIGINT);
  USE bench; INSERT INTO items SELECT seq, CONCAT('item-', seq), seq * 7 FROM seq_1_to_10000;" \
  || { tail -n 30 "$tmp/server.log"; exit 1; }

client=(taskset -c 1 "$bin")
args=("$port" bench benchpw bench)
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
