#!/usr/bin/env bash
# The main job: the legacy example served three ways — (a) a thread per connection,
# (b) a fixed thread pool, (c) fiberloop, a fiber per request on one loop — each in
# front of the same slow backend (10 ms a request), driven by wrk at 10, 100, 1000
# and 10000 connections. Builds what it needs (Release, build/bench; installs missing
# Debian packages, as root), then prints a table and the issue's target checks and
# writes bench/results/compare.csv plus throughput/p99/peak-RSS plots (PNG).
#
#   bash bench/run.sh                  ~2 minutes: 3 variants x 4 points x 10 s
#   bash bench/run.sh --duration 30    longer points
#   bash bench/run.sh --delay-ms 50    slower backend
#   bash bench/run.sh --cache          the same with cache-aside: two memcached servers (on
#                                      CPU 1 with wrk and the backend), every variant
#                                      with --cache; output in bench/results/cache
#   bash bench/run.sh --inventory mariadb
#                                      the same with a SQL bottom: a private MariaDB (on CPU 1
#                                      with wrk; bench/sql/mariadb.sh) holding the inventory
#                                      table, every variant with --inventory mysql://…, no HTTP
#                                      backend; output in bench/results/inventory
#   bash bench/run.sh --inventory URL  the same against a database you loaded (sqlite:PATH,
#                                      mysql://…): inventory(sku BIGINT PRIMARY KEY, stock
#                                      BIGINT, price_cents BIGINT), skus 1..100000
#   bash bench/run.sh --unpinned       no taskset (by default the server under test gets
#                                      CPU 0, wrk and the backend share CPU 1)
#   bash bench/run.sh --smoke          1 s points at 10 and 100 connections into a temp
#                                      dir, then checks the CSV (a ctest test runs this)
#   bash bench/run.sh --demo           the in-process demo (bench/fibers_vs_threads.cpp)
#   bash bench/run.sh --help           every option (bench/compare/compare.py)
#
# --bin-dir DIR uses legacy_* binaries already built in DIR and skips installing/building.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

demo=0
bin_dir=""
inventory=""
unpinned=0
args=()
while (($#)); do
  case $1 in
    --demo) demo=1; shift ;;
    --inventory) inventory=${2:?--inventory needs mariadb or a URL}; shift 2 ;;
    --inventory=*) inventory=${1#--inventory=}; shift ;;
    --unpinned) unpinned=1; args+=("$1"); shift ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --bin-dir=*) bin_dir=${1#--bin-dir=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

if [[ -z $bin_dir ]]; then
  packages=(g++ cmake ninja-build pkg-config libboost1.81-dev libboost-fiber1.81-dev libboost-context1.81-dev
            libjemalloc-dev libbenchmark-dev libmemcached-dev libssl-dev memcached wrk gnuplot-nox python3
            libmariadb-dev mariadb-server mariadb-client)
  missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    echo "== installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
  fi

  build_dir=${BUILD_DIR:-$repo/build/bench}
  mkdir -p "$build_dir"
  echo "== building (Release) in $build_dir"
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFIBERLOOP_BUILD_TESTS=OFF \
    > "$build_dir/configure.log" 2>&1 || { cat "$build_dir/configure.log"; exit 1; }
  if ((demo)); then
    cmake --build "$build_dir" --target fiberloop_fibers_vs_threads > "$build_dir/build.log" 2>&1 \
      || { tail -n 60 "$build_dir/build.log"; exit 1; }
  else
    targets=(legacy_backend legacy_threads legacy_pool legacy_fibers legacy_inventory_load)
    # One at a time only when the batch fails: a binary that does not build becomes a
    # failed variant in the results, not a failed run.
    if ! cmake --build "$build_dir" --target "${targets[@]}" > "$build_dir/build.log" 2>&1; then
      for t in "${targets[@]}"; do
        cmake --build "$build_dir" --target "$t" > "$build_dir/build-$t.log" 2>&1 \
          || echo "== $t did not build (see $build_dir/build-$t.log): its rows will say failed:missing-binary"
      done
    fi
  fi
  bin_dir=$build_dir/legacy_example
fi

# wrk, the servers and the backend each need a descriptor per connection (and the
# servers one more per backend connection): as many as the hard limit allows.
ulimit -n "$(ulimit -Hn)" 2> /dev/null || true

if ((demo)); then
  # Both demo variants get the same single CPU, so the comparison is core for core.
  pin=()
  if command -v taskset > /dev/null && (($(nproc) > 1)); then pin=(taskset -c 1); fi
  echo "== demo: $(nproc) vCPU, $( ((${#pin[@]})) && echo 'pinned to CPU 1' || echo unpinned)"
  exec "${pin[@]}" "${BUILD_DIR:-$repo/build/bench}/bench/fiberloop_fibers_vs_threads" "${args[@]}"
fi
if [[ $inventory == mariadb ]]; then
  # A private MariaDB with the inventory (legacy_inventory_load: the skus the middle asks
  # for, priced as legacy_backend answers), on the CPU of wrk (the server under test keeps
  # CPU 0), stopped when this script exits (so no exec below).
  source "$repo/bench/scratch.sh"     # $tmp, $server_pid, stop_server
  source "$repo/bench/sql/mariadb.sh"  # start_mariadb, $mariadb_url
  pin=()
  if ((!unpinned)) && command -v taskset > /dev/null && (($(nproc) > 1)); then pin=(taskset -c 1); fi
  start_mariadb "${pin[@]}"
  "$bin_dir/legacy_inventory_load" "$mariadb_url" > "$tmp/inventory_load.log" 2>&1 ||
    { echo "legacy_inventory_load failed:" >&2; cat "$tmp/inventory_load.log" >&2; exit 1; }
  echo "== MariaDB $mariadb_version on 127.0.0.1:$mariadb_port, inventory loaded by legacy_inventory_load:" \
    "$(tail -n 1 "$tmp/inventory_load.log")"
  python3 "$repo/bench/compare/compare.py" --bin-dir "$bin_dir" --inventory "$mariadb_url" \
    --inventory-label "MariaDB $mariadb_version" "${args[@]}"
  exit
fi
if [[ -n $inventory ]]; then args+=(--inventory "$inventory"); fi
exec python3 "$repo/bench/compare/compare.py" --bin-dir "$bin_dir" "${args[@]}"
