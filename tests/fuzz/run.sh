#!/usr/bin/env bash
# Builds the libFuzzer targets (clang 14, ASan+UBSan; tests/fuzz/CMakeLists.txt) in
# build/fuzz and runs each for a bounded time from its seed corpus. A crash, a failed
# invariant, a leak, an input running over 10 s or memory over 1 GiB fails the target;
# libFuzzer saves the input in build/fuzz/artifacts/ (reproduce: <target> <file>).
# Inputs that found new coverage collect in build/fuzz/corpus/ for the next run.
#
#   bash tests/fuzz/run.sh [seconds]     per target; 60 by default
#
# Prints one line per target, "fuzz <target>: ok, N runs in S s" or "fuzz <target>:
# FAILED ..."; exits non-zero when a target failed or could not be built.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
seconds=${1:-60}
build_dir=build/fuzz
targets=(http_request_fuzz:request http_response_fuzz:response)

command -v clang++-14 > /dev/null || { echo "fuzz: clang++-14 is not installed (apt-get install clang-14 libfuzzer-14-dev)"; exit 1; }
mkdir -p "$build_dir"
echo "== build fuzz (clang 14, libFuzzer + ASan + UBSan)"
launcher=()
command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
      -DFIBERLOOP_BUILD_FUZZ=ON "${launcher[@]}" > "$build_dir.configure.log" 2>&1 \
  || { cat "$build_dir.configure.log"; echo "fuzz: configure FAILED"; exit 1; }
cmake --build "$build_dir" -j"${FIBERLOOP_JOBS:-$(nproc)}" > "$build_dir.build.log" 2>&1 \
  || { tail -n 60 "$build_dir.build.log"; echo "fuzz: build FAILED"; exit 1; }

failed=0
for entry in "${targets[@]}"; do
  target=${entry%%:*} seeds=tests/fuzz/corpus/${entry#*:}
  work=$build_dir/corpus/$target log=$build_dir/$target.log
  mkdir -p "$work" "$build_dir/artifacts"
  # The first corpus directory is where libFuzzer adds what it finds; the seeds stay as committed.
  ASAN_OPTIONS=detect_leaks=1 "$build_dir/tests/fuzz/$target" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=1024 -max_len=8192 -dict=tests/fuzz/http.dict -print_final_stats=1 \
    -artifact_prefix="$build_dir/artifacts/$target-" "$work" "$seeds" > "$log" 2>&1
  status=$?
  runs=$(sed -nE 's/^Done ([0-9]+) runs in ([0-9]+) second.*/\1 runs in \2 s/p' "$log")
  if ((status == 0)) && [[ -n $runs ]]; then
    echo "fuzz $target: ok, $runs, corpus $(find "$work" -type f | wc -l) inputs"
  else
    failed=$((failed + 1))
    grep -aE 'INVARIANT VIOLATED|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|assertion|Test unit written' "$log" \
      | head -n 8
    echo "fuzz $target: FAILED (exit $status; log $log)"
  fi
done
((failed == 0))
