#!/usr/bin/env bash
# The test command: installs what is missing (Debian 12, as root), then builds and
# runs every test three ways — Release, ASan+UBSan, and TSan (all but two tests that
# hold thousands of fibers) — plus the install check. Ends with one line "N passed, N failed".
#
#   bash tests/run.sh            everything (what CI runs)
#   FIBERLOOP_QUICK=1 bash tests/run.sh   Release only
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
jobs=${FIBERLOOP_JOBS:-$(nproc)}

# ---- dependencies ---------------------------------------------------------------
packages=(g++ cmake ninja-build pkg-config libboost1.81-dev libboost-fiber1.81-dev libboost-context1.81-dev
          libjemalloc-dev libgtest-dev libgmock-dev libbenchmark-dev curl wrk nginx-light gnuplot-nox
          clang-14 libfuzzer-14-dev libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "== installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null || { echo "apt-get install failed"; exit 1; }
fi

total_pass=0
total_fail=0
failed_steps=()

# Runs ctest in $1 (extra args after it) and adds its counts to the totals.
run_ctest() {
  local dir=$1; shift
  local log
  log=$(mktemp)
  (cd "$dir" && ctest --output-on-failure -j"$jobs" "$@") 2>&1 | tee "$log"
  local line
  line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -n 1)
  if [[ -z $line ]]; then
    failed_steps+=("ctest in $dir printed no summary")
    total_fail=$((total_fail + 1))
  else
    local failed all
    failed=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<< "$line")
    all=$(sed -E 's/.* tests failed out of ([0-9]+).*/\1/' <<< "$line")
    total_pass=$((total_pass + all - failed))
    total_fail=$((total_fail + failed))
    ((failed == 0)) || failed_steps+=("$dir: $failed failed")
  fi
  rm -f "$log"
}

# Configures and builds in build/$1 with the remaining cmake arguments.
build() {
  local name=$1; shift
  local start=$SECONDS
  echo "== build $name"
  cmake -S . -B "build/$name" -G Ninja -DFIBERLOOP_BUILD_BENCH=OFF "$@" > "build/$name.configure.log" 2>&1 \
    || { cat "build/$name.configure.log"; failed_steps+=("configure $name"); return 1; }
  cmake --build "build/$name" -j"$jobs" > "build/$name.build.log" 2>&1 \
    || { tail -n 60 "build/$name.build.log"; failed_steps+=("build $name"); return 1; }
  echo "   built in $((SECONDS - start)) s"
}

mkdir -p build
step_start=$SECONDS
if build release -DCMAKE_BUILD_TYPE=Release; then
  run_ctest build/release
fi
echo "== release: $((SECONDS - step_start)) s"

if [[ -z ${FIBERLOOP_QUICK:-} ]]; then
  step_start=$SECONDS
  if build asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFIBERLOOP_SANITIZE=address; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      run_ctest build/asan
  fi
  echo "== asan+ubsan: $((SECONDS - step_start)) s"

  # TSan: the suite minus two tests too big for TSan's per-fiber traces
  # (tests/CMakeLists.txt names them).
  step_start=$SECONDS
  if build tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFIBERLOOP_SANITIZE=thread; then
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 run_ctest build/tsan
  fi
  echo "== tsan: $((SECONDS - step_start)) s"
fi

# Fuzzing: each libFuzzer target for 60 s (tests/fuzz/run.sh), counted as one test each.
run_fuzz() {
  local step_start=$SECONDS log passed failed
  log=$(mktemp)
  bash tests/fuzz/run.sh 60 2>&1 | tee "$log"
  passed=$(grep -c '^fuzz .*: ok' "$log")
  failed=$(grep -c '^fuzz .*: FAILED' "$log")
  ((passed + failed > 0)) || failed=1  # the fuzz build failed: nothing ran
  total_pass=$((total_pass + passed))
  total_fail=$((total_fail + failed))
  ((failed == 0)) || failed_steps+=("fuzz: $failed failed")
  rm -f "$log"
  echo "== fuzz: $((SECONDS - step_start)) s"
}
[[ -z ${FIBERLOOP_QUICK:-} ]] && run_fuzz

echo
if ((${#failed_steps[@]})); then
  printf 'FAILED: %s\n' "${failed_steps[@]}"
fi
echo "${total_pass} passed, ${total_fail} failed"
((${#failed_steps[@]} == 0 && total_fail == 0))
