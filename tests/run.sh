#!/usr/bin/env bash
# The test command: installs what is missing (Debian 12, as root), then builds and
# runs every test three ways — Release (which also compiles the benchmarks),
# ASan+UBSan, and TSan (all but the two tests that hold thousands of fibers; the
# filter is in tests/CMakeLists.txt) — plus the install check, then runs each HTTP
# fuzz target (clang 14, libFuzzer) for 60 s.
#
# Each ctest run is counted from its JUnit report (tests/ctest_summary.py): passed,
# failed, and skipped (GTEST_SKIP) apart. A failed configure or build counts as a
# failure, and so does every test the binary registers that ctest did not run.
# Ends with one line "N passed, N failed, N skipped"; exits non-zero on any failure.
#
#   bash tests/run.sh                      everything (what CI runs)
#   FIBERLOOP_QUICK=1 bash tests/run.sh    Release only
#
# Steps are function calls at the bottom: build_step (configure and build one
# build directory), ctest_step (run its tests), fuzz_step (the fuzz targets).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
jobs=${FIBERLOOP_JOBS:-$(nproc)}

total_pass=0
total_fail=0
total_skip=0
failed_steps=()

# ---- steps --------------------------------------------------------------------------

# Installs the Debian packages the builds and tests need, when some are missing.
install_dependencies() {
  local packages=(g++ cmake ninja-build pkg-config python3 libboost1.81-dev libboost-fiber1.81-dev
                  libboost-context1.81-dev libjemalloc-dev libgtest-dev libgmock-dev libbenchmark-dev
                  curl wrk nginx-light gnuplot-nox clang-14 libfuzzer-14-dev libclang-rt-14-dev
                  libmemcached-dev libssl-dev memcached libmemcached-tools libmariadb-dev mariadb-server
                  libsqlite3-dev)
  local missing=() p
  for p in "${packages[@]}"; do dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  echo "== installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null \
    || { echo "apt-get install failed"; exit 1; }
}

# Records a failure that is not one test's: a step that broke as a whole.
step_failed() {
  failed_steps+=("$1")
  total_fail=$((total_fail + 1))
}

# Configures and builds build/$1 with the remaining cmake arguments. A failure
# counts as one failed test (and the caller skips that build's tests).
build_step() {
  local name=$1; shift
  local start=$SECONDS
  echo "== build $name"
  if ! cmake -S . -B "build/$name" -G Ninja "$@" > "build/$name.configure.log" 2>&1; then
    tail -n 60 "build/$name.configure.log"
    step_failed "configure $name (build/$name.configure.log)"
    return 1
  fi
  if ! cmake --build "build/$name" -j"$jobs" > "build/$name.build.log" 2>&1; then
    grep -E -A5 'error|FAILED' "build/$name.build.log" | head -n 80
    step_failed "build $name (build/$name.build.log)"
    return 1
  fi
  echo "   built in $((SECONDS - start)) s"
}

# Runs the tests of build/$1 (the environment the caller sets goes to them) and
# adds their counts to the totals. Every test fiberloop_tests registers must have
# run, but those the build's documented TSan filter excludes.
ctest_step() {
  local name=$1
  local dir=build/$name
  local report=$dir/ctest-report.xml listing=$dir/registered-tests.txt
  rm -f "$report"
  (cd "$dir" && ctest --output-on-failure -j"$jobs" --output-junit ctest-report.xml) > "$dir/ctest.log" 2>&1
  local ctest_status=$?
  grep -E '^ *[0-9]+/[0-9]+ Test|tests passed|Total Test time' "$dir/ctest.log" | tail -n 3
  if [[ ! -s $report ]]; then
    tail -n 60 "$dir/ctest.log"
    step_failed "ctest in $dir wrote no report (exit status $ctest_status)"
    return
  fi
  local filter
  filter=$(sed -n 's/^FIBERLOOP_TSAN_FILTER:STRING=//p' "$dir/CMakeCache.txt")
  if ! "$dir/tests/fiberloop_tests" --gtest_list_tests > "$listing" 2>&1; then
    step_failed "$dir/tests/fiberloop_tests --gtest_list_tests failed"
    return
  fi
  local summary counts passed failed skipped
  summary=$(python3 tests/ctest_summary.py "$report" --gtest-list "$listing" --gtest-filter="$filter") \
    || { step_failed "tests/ctest_summary.py could not read $report"; return; }
  counts=$(head -n 1 <<< "$summary")
  read -r _ passed failed skipped <<< "$counts"
  tail -n +2 <<< "$summary"
  echo "   $name: $passed passed, $failed failed, $skipped skipped"
  total_pass=$((total_pass + passed))
  total_fail=$((total_fail + failed))
  total_skip=$((total_skip + skipped))
  if ((failed > 0)); then
    failed_steps+=("$name: $failed failed (log: $dir/ctest.log)")
  elif ((ctest_status != 0)); then
    step_failed "ctest in $dir exited with status $ctest_status though every test passed"
  fi
}

# Builds the libFuzzer targets and runs each for $1 seconds (tests/fuzz/run.sh): one
# test per target; a fuzz build that fails counts as one failure.
fuzz_step() {
  local log=build/fuzz.log passed failed
  echo "== fuzz"
  bash tests/fuzz/run.sh "$1" 2>&1 | tee "$log"
  passed=$(grep -c '^fuzz .*: ok' "$log")
  failed=$(grep -c '^fuzz .*: FAILED' "$log")
  total_pass=$((total_pass + passed))
  if ((passed + failed == 0)); then
    step_failed "fuzz: nothing ran ($log)"
  elif ((failed > 0)); then
    total_fail=$((total_fail + failed))
    failed_steps+=("fuzz: $failed failed ($log)")
  fi
}

# ---- what CI runs -------------------------------------------------------------------

install_dependencies
mkdir -p build

start=$SECONDS
# The benchmarks only measure (bench/run*.sh run them); compiling them here keeps
# them from rotting.
if build_step release -DCMAKE_BUILD_TYPE=Release -DFIBERLOOP_BUILD_BENCH=ON; then
  ctest_step release
fi
echo "== release: $((SECONDS - start)) s"

if [[ -z ${FIBERLOOP_QUICK:-} ]]; then
  start=$SECONDS
  if build_step asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFIBERLOOP_SANITIZE=address -DFIBERLOOP_BUILD_BENCH=OFF; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest_step asan
  fi
  echo "== asan+ubsan: $((SECONDS - start)) s"

  start=$SECONDS
  if build_step tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFIBERLOOP_SANITIZE=thread -DFIBERLOOP_BUILD_BENCH=OFF; then
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ctest_step tsan
  fi
  echo "== tsan: $((SECONDS - start)) s"

  start=$SECONDS
  fuzz_step 60
  echo "== fuzz: $((SECONDS - start)) s"
fi


echo
if ((${#failed_steps[@]})); then
  printf 'FAILED: %s\n' "${failed_steps[@]}"
fi
echo "${total_pass} passed, ${total_fail} failed, ${total_skip} skipped"
((${#failed_steps[@]} == 0 && total_fail == 0))
