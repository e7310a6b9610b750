#!/usr/bin/env bash
# The main job: builds what it needs (installing missing Debian packages, as root),
# then runs the thread-per-request vs fiber-per-request comparison and prints it.
#
#   bash bench/run.sh                   concurrencies 100, 1000, 10000
#   bash bench/run.sh 500 5000          other concurrencies
#
# Today this is the in-process demo (bench/fibers_vs_threads.cpp): the same ten
# middle functions, a thread or a fiber per request. The full HTTP comparison of
# legacy_example/ replaces it when that lands.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

packages=(g++ cmake ninja-build pkg-config libboost1.81-dev libboost-fiber1.81-dev libboost-context1.81-dev
          libjemalloc-dev libbenchmark-dev)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "== installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" > /dev/null
fi

build_dir=${BUILD_DIR:-$repo/build/bench}
echo "== building (Release) in $build_dir"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFIBERLOOP_BUILD_TESTS=OFF > /dev/null
cmake --build "$build_dir" --target fiberloop_fibers_vs_threads > /dev/null

# Both variants get the same single CPU, so the comparison is core for core.
pin=()
if command -v taskset > /dev/null && (($(nproc) > 1)); then pin=(taskset -c 1); fi
placement="unpinned"
((${#pin[@]})) && placement="each variant pinned to CPU 1"
echo "== machine: $(nproc) vCPU, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $placement"
ulimit -n 65536 2> /dev/null || true
"${pin[@]}" "$build_dir/bench/fiberloop_fibers_vs_threads" "$@"
