// Core costs of fiberloop, each per operation, next to its floors:
//   - raw boost::context::fiber (a switch there and back; create + run to finish);
//   - plain Boost.Fiber on its default round_robin scheduler;
//   - std::thread create + join, for scale.
//
// Thread rules. Boost.Fiber installs one scheduling algorithm per OS thread, and
// fiberloop installs its own (LoopScheduler) on the thread that runs its loops: the
// benchmark main thread here. So every plain-Boost.Fiber benchmark runs its timed
// loop on a fresh std::thread that never touches fiberloop, and the helper threads
// that complete fiberloop promises never touch Boost.Fiber.
//
// Every benchmark reports `time_per_op` (time / operations, on the benchmark's own
// clock: CPU time of the timed thread, or wall time for the /real_time ones that
// involve several OS threads) and items_per_second. bench/run_core.sh tabulates them.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include <boost/context/fiber.hpp>
#include <boost/context/pooled_fixedsize_stack.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>
#include <boost/fiber/all.hpp>

#include <fiberloop/fiberloop.hpp>

namespace {

namespace bctx = boost::context;
namespace bf = boost::fibers;

constexpr std::size_t kStackSize = 256 * 1024;  // fiberloop's default stack size, used everywhere
constexpr int kBatch = 256;                     // fibers per batch: fits the default stack pool (1024)

/// Time per operation (`ops` operations per benchmark iteration) and items/s.
void report_per_op(benchmark::State& state, double ops) {
  state.SetItemsProcessed(static_cast<std::int64_t>(static_cast<double>(state.iterations()) * ops));
  // Rate = ops * iterations / seconds, inverted: seconds per op (the console shows
  // it with an SI prefix, e.g. "168.5ns"; the JSON holds seconds).
  state.counters["time_per_op"] =
      benchmark::Counter(ops, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void fail(benchmark::State& state, const std::exception_ptr& error) {
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  state.SkipWithError(what.c_str());
}

/// Runs `body` on a new OS thread that uses plain Boost.Fiber (round_robin) and
/// never touches fiberloop; joins it.
template <class Body>
void on_plain_boost_fiber_thread(benchmark::State& state, Body&& body) {
  std::exception_ptr error;
  std::thread thread([&] {
    try {
      body();
    } catch (...) {
      error = std::current_exception();
    }
  });
  thread.join();
  if (error) fail(state, error);
}

/// Runs `body` on a fiber of a fresh IOLoop on the calling (benchmark main) thread.
template <class Body>
void on_fiberloop_fiber(benchmark::State& state, const fiberloop::IOLoop::Options& options, Body&& body) {
  try {
    fiberloop::IOLoop loop(options);
    loop.run_sync([&] { body(loop); });
  } catch (...) {
    fail(state, std::current_exception());
  }
}
template <class Body>
void on_fiberloop_fiber(benchmark::State& state, Body&& body) {
  on_fiberloop_fiber(state, fiberloop::IOLoop::Options{}, body);
}

/// A helper OS thread that takes promises and completes them: the "other thread"
/// of the cross-thread round trips. It owns each promise while completing it, as
/// an executor thread would. Sleeps on a condition variable between requests.
template <class PromiseT>
class Completer {
 public:
  Completer() : thread_([this] { run(); }) {}
  ~Completer() {
    {
      std::lock_guard lock(mutex_);
      quit_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  Completer(const Completer&) = delete;
  Completer& operator=(const Completer&) = delete;

  void complete(PromiseT promise, int value) {
    {
      std::lock_guard lock(mutex_);
      pending_.emplace(std::move(promise));
      value_ = value;
    }
    cv_.notify_one();
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [this] { return pending_.has_value() || quit_; });
      if (!pending_) return;
      PromiseT promise = std::move(*pending_);
      pending_.reset();
      const int value = value_;
      lock.unlock();
      promise.set_value(value);
      // `promise` (our reference to the state) is released here, off the lock.
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::optional<PromiseT> pending_;
  int value_ = 0;
  bool quit_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

// =====================================================================================
// fiberloop
// =====================================================================================

// Three stack contexts, as a request might have: an error handler and two
// context-local values (a request id, a user). Every registration captures them and
// every callback or resumed fiber re-enters them.
fiberloop::ContextLocal<int> request_id;
fiberloop::ContextLocal<std::string> request_user;
struct ThreeContexts {
  fiberloop::ExceptionStackContext handler{[](std::exception_ptr) { return true; }};
  fiberloop::ContextScope id;
  fiberloop::ContextScope user;
  ThreeContexts() : id(request_id.set(7)), user(request_user.set("a user name beyond SSO")) {}
};

// (a) spawn-to-finish of an empty fiber, warm pooled (guard-paged) stacks: a fiber
// spawns kBatch fibers, then waits for the last one (they run FIFO in one pass, so
// all have finished); the stacks return to the pool in the same loop iteration.
void BM_Fiberloop_SpawnBatch(benchmark::State& state) {
  const auto batch = static_cast<int>(state.range(0));
  std::uint64_t ran = 0;
  on_fiberloop_fiber(state, [&](fiberloop::IOLoop& loop) {
    auto one_batch = [&] {
      fiberloop::Future<void> last;
      for (int i = 0; i < batch; ++i) last = loop.spawn([&ran] { ++ran; });
      fiberloop::wait_for_future(last);
    };
    one_batch();  // warm the stack pool (untimed)
    for (auto _ : state) {
      one_batch();
      benchmark::ClobberMemory();
    }
  });
  benchmark::DoNotOptimize(ran);
  if (ran != static_cast<std::uint64_t>(state.iterations() + 1) * static_cast<std::uint64_t>(batch))
    state.SkipWithError("not every spawned fiber ran");
  report_per_op(state, batch);
}

// (a') one at a time: spawn one empty fiber and wait for it (spawn + join). Includes
// the waiting fiber's own suspend + resume, as Boost.Fiber's create + join does.
void BM_Fiberloop_SpawnOneAndWait(benchmark::State& state) {
  std::uint64_t ran = 0;
  on_fiberloop_fiber(state, [&](fiberloop::IOLoop& loop) {
    fiberloop::wait_for_future(loop.spawn([&ran] { ++ran; }));  // warm
    for (auto _ : state) fiberloop::wait_for_future(loop.spawn([&ran] { ++ran; }));
  });
  benchmark::DoNotOptimize(ran);
  if (ran != static_cast<std::uint64_t>(state.iterations()) + 1) state.SkipWithError("not every fiber ran");
  report_per_op(state, 1);
}

// (b) wait_for_future suspend + resume on a future a loop callback completes: one
// round trip fiber -> loop -> fiber (two stack switches plus one loop iteration).
// With `contexts`, the fiber runs under ThreeContexts (so does the callback).
/// The timed loop of (b), in a fiber of `loop`.
void time_wait_loop_completed(benchmark::State& state, fiberloop::IOLoop& loop) {
  std::int64_t sum = 0;
  int i = 0;
  for (auto _ : state) {
    fiberloop::Promise<int> p;
    fiberloop::Future<int> f = p.get_future();
    loop.add_callback([&p, i] { p.set_value(i); });
    sum += fiberloop::wait_for_future(f);
    ++i;
  }
  benchmark::DoNotOptimize(sum);
  const auto n = state.iterations();
  if (sum != n * (n - 1) / 2) state.SkipWithError("wrong results");
  report_per_op(state, 1);
}
// With `options`, on a loop so configured (the watchdog on, say).
void wait_loop_completed(benchmark::State& state, bool contexts, const fiberloop::IOLoop::Options& options = {}) {
  on_fiberloop_fiber(state, options, [&](fiberloop::IOLoop& loop) {
    std::optional<ThreeContexts> active;
    if (contexts) active.emplace();
    time_wait_loop_completed(state, loop);
  });
}
void BM_Fiberloop_WaitLoopCompleted(benchmark::State& state) { wait_loop_completed(state, false); }
void BM_Fiberloop_WaitLoopCompletedInContexts(benchmark::State& state) { wait_loop_completed(state, true); }
// The watchdog's cost on the loop's side: its relaxed stores are made either way,
// so this should match BM_Fiberloop_WaitLoopCompleted (issue 12: within 5 %). The
// watchdog's own thread samples every 25 ms; its CPU time is not the timed thread's.
void BM_Fiberloop_WaitLoopCompletedWatchdog(benchmark::State& state) {
  fiberloop::IOLoop::Options options;
  options.watchdog_threshold = std::chrono::milliseconds(100);
  wait_loop_completed(state, false, options);
}
BENCHMARK(BM_Fiberloop_WaitLoopCompleted);
BENCHMARK(BM_Fiberloop_WaitLoopCompletedWatchdog);
BENCHMARK(BM_Fiberloop_WaitLoopCompletedInContexts);

// (b') (b) in a fiber with a guard-paged stack, or with a stack past the guard budget,
// whose canary is checked at every switch away from the fiber (one per round trip):
// the difference is the check's cost. On a fresh thread, whose stack pool is empty:
// with guarded_stacks 1, run_sync's fiber (or earlier benchmarks' pooled stacks)
// holds the budget, so the measured fiber's stack is unguarded.
void wait_loop_completed_on_stack(benchmark::State& state, std::size_t guarded_stacks) {
  std::thread([&] {
    fiberloop::IOLoop::Options options;
    options.guarded_stacks = guarded_stacks;
    on_fiberloop_fiber(state, options, [&](fiberloop::IOLoop& loop) {
      fiberloop::wait_for_future(loop.spawn([&] { time_wait_loop_completed(state, loop); }));
    });
  }).join();
}
void BM_Fiberloop_WaitLoopCompletedGuardedStack(benchmark::State& state) {
  wait_loop_completed_on_stack(state, std::size_t{1} << 30);
}
void BM_Fiberloop_WaitLoopCompletedCanaryStack(benchmark::State& state) { wait_loop_completed_on_stack(state, 1); }
BENCHMARK(BM_Fiberloop_WaitLoopCompletedGuardedStack)->UseRealTime();
BENCHMARK(BM_Fiberloop_WaitLoopCompletedCanaryStack)->UseRealTime();

// (c) wait_for_future on an already-done future (inside a fiber): no switch.
void BM_Fiberloop_WaitDone(benchmark::State& state) {
  std::int64_t sum = 0;
  on_fiberloop_fiber(state, [&](fiberloop::IOLoop&) {
    const fiberloop::Future<int> f = fiberloop::make_ready_future(1);
    for (auto _ : state) {
      benchmark::DoNotOptimize(f);  // reload the handle every time
      sum += fiberloop::wait_for_future(f);
    }
  });
  benchmark::DoNotOptimize(sum);
  if (sum != state.iterations()) state.SkipWithError("wrong results");
  report_per_op(state, 1);
}
BENCHMARK(BM_Fiberloop_WaitDone);

// (d) add_callback throughput: queue N callbacks from the loop thread, then turn the
// loop once (stop() before start() makes start() run one iteration) to run them.
// With `contexts`, they are queued under ThreeContexts and each runs under them.
void add_callback_batches(benchmark::State& state, bool contexts) {
  const auto n = static_cast<int>(state.range(0));
  std::uint64_t ran = 0;
  try {
    fiberloop::IOLoop loop;
    std::optional<ThreeContexts> active;
    if (contexts) active.emplace();
    auto one_batch = [&] {
      for (int i = 0; i < n; ++i) loop.add_callback([&ran] { ++ran; });
      loop.stop();
      loop.start();
    };
    one_batch();  // warm the queues' capacity (untimed)
    for (auto _ : state) {
      one_batch();
      benchmark::ClobberMemory();
    }
  } catch (...) {
    fail(state, std::current_exception());
  }
  benchmark::DoNotOptimize(ran);
  if (ran != static_cast<std::uint64_t>(state.iterations() + 1) * static_cast<std::uint64_t>(n))
    state.SkipWithError("not every callback ran");
  report_per_op(state, n);
}
void BM_Fiberloop_AddCallback(benchmark::State& state) { add_callback_batches(state, false); }
void BM_Fiberloop_AddCallbackInContexts(benchmark::State& state) { add_callback_batches(state, true); }
BENCHMARK(BM_Fiberloop_AddCallback)->Arg(1000);
BENCHMARK(BM_Fiberloop_AddCallbackInContexts)->Arg(1000);

// (d') what a context costs by itself (no loop involved): setting a ContextLocal value
// and reading it back (a node allocated, pushed and popped), making and ending an
// ExceptionStackContext, and calling a wrap()ped function (entering the chain it
// captured: two reference counts and two thread-local stores).
void BM_StackContext_LocalSetGet(benchmark::State& state) {
  std::int64_t sum = 0;
  for (auto _ : state) {
    auto scope = request_id.set(static_cast<int>(sum & 1));
    sum += *request_id.get() + 1;
  }
  benchmark::DoNotOptimize(sum);
  report_per_op(state, 1);
}
BENCHMARK(BM_StackContext_LocalSetGet);

void BM_StackContext_ExceptionContext(benchmark::State& state) {
  for (auto _ : state) {
    fiberloop::ExceptionStackContext context([](std::exception_ptr) { return true; });
    benchmark::ClobberMemory();
  }
  report_per_op(state, 1);
}
BENCHMARK(BM_StackContext_ExceptionContext);

void BM_StackContext_WrappedCall(benchmark::State& state) {
  std::int64_t sum = 0;
  std::optional<std::function<void()>> wrapped;
  {
    ThreeContexts contexts;
    wrapped.emplace(fiberloop::wrap([&sum] { sum += *request_id.get(); }));
  }
  for (auto _ : state) (*wrapped)();
  benchmark::DoNotOptimize(sum);
  if (sum != 7 * state.iterations()) state.SkipWithError("wrong results");
  report_per_op(state, 1);
}
BENCHMARK(BM_StackContext_WrappedCall);

// (e) call_later + remove_timeout, per pair, with `range(0)` other timers pending.
void BM_Fiberloop_TimerAddRemove(benchmark::State& state) {
  const auto background = static_cast<int>(state.range(0));
  std::uint64_t fired = 0;
  try {
    fiberloop::IOLoop loop;
    using std::chrono::hours;
    using std::chrono::microseconds;
    for (int i = 0; i < background; ++i) loop.call_later(hours(1) + microseconds(2 * i), [&fired] { ++fired; });
    const auto delay = hours(1) + microseconds(background);  // lands mid-heap
    for (auto _ : state) {
      fiberloop::TimeoutHandle h = loop.call_later(delay, [&fired] { ++fired; });
      benchmark::DoNotOptimize(h);
      loop.remove_timeout(h);
    }
  } catch (...) {
    fail(state, std::current_exception());
  }
  benchmark::DoNotOptimize(fired);
  if (fired != 0) state.SkipWithError("a removed timer fired");
  report_per_op(state, 1);
}
BENCHMARK(BM_Fiberloop_TimerAddRemove)->Arg(0)->Arg(1000);

// (f) cross-thread: another OS thread completes the promise; the fiber resumes. The
// loop thread sleeps in epoll and is woken through its eventfd. Wall time.
void BM_Fiberloop_WaitCrossThread(benchmark::State& state) {
  std::int64_t sum = 0;
  on_fiberloop_fiber(state, [&](fiberloop::IOLoop&) {
    Completer<fiberloop::Promise<int>> other;
    for (auto _ : state) {
      fiberloop::Promise<int> p;
      fiberloop::Future<int> f = p.get_future();
      other.complete(std::move(p), 1);
      sum += fiberloop::wait_for_future(f);
    }
  });
  benchmark::DoNotOptimize(sum);
  if (sum != state.iterations()) state.SkipWithError("wrong results");
  report_per_op(state, 1);
}
BENCHMARK(BM_Fiberloop_WaitCrossThread)->UseRealTime();

// =====================================================================================
// Floor: raw Boost.Context
// =====================================================================================

// A resume pair: switch to a peer fiber and straight back.
void BM_RawContext_ResumePair(benchmark::State& state) {
  bool stop = false;
  std::uint64_t peer_turns = 0;
  bctx::fiber peer(std::allocator_arg, bctx::pooled_fixedsize_stack(kStackSize), [&](bctx::fiber&& caller) {
    while (!stop) {
      ++peer_turns;
      caller = std::move(caller).resume();
    }
    return std::move(caller);
  });
  for (auto _ : state) peer = std::move(peer).resume();
  stop = true;
  peer = std::move(peer).resume();  // lets the peer return
  benchmark::DoNotOptimize(peer_turns);
  if (peer_turns != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("peer did not run");
  report_per_op(state, 1);
}
BENCHMARK(BM_RawContext_ResumePair);

// Create a fiber on a pooled stack and resume it to finish (it returns at once).
template <class StackAllocator>
void raw_create_to_finish(benchmark::State& state, StackAllocator stacks) {
  std::uint64_t ran = 0;
  auto once = [&] {
    bctx::fiber f(std::allocator_arg, stacks, [&ran](bctx::fiber&& caller) {
      ++ran;
      return std::move(caller);
    });
    f = std::move(f).resume();
    benchmark::DoNotOptimize(f);
  };
  once();  // warm the pool
  for (auto _ : state) once();
  benchmark::DoNotOptimize(ran);
  if (ran != static_cast<std::uint64_t>(state.iterations()) + 1) state.SkipWithError("fiber did not run");
  report_per_op(state, 1);
}
void BM_RawContext_CreateFinish_Pooled(benchmark::State& state) {
  raw_create_to_finish(state, bctx::pooled_fixedsize_stack(kStackSize));
}
BENCHMARK(BM_RawContext_CreateFinish_Pooled);
// Not pooled: a fresh mmap + guard page + munmap per fiber, for contrast.
void BM_RawContext_CreateFinish_Protected(benchmark::State& state) {
  raw_create_to_finish(state, bctx::protected_fixedsize_stack(kStackSize));
}
BENCHMARK(BM_RawContext_CreateFinish_Protected);

// =====================================================================================
// Floor: plain Boost.Fiber (round_robin), each on its own OS thread
// =====================================================================================

// this_fiber::yield round trip: main yields to a peer that yields back. round_robin
// also cycles its dispatcher context through the ready queue.
void BM_BoostFiber_YieldRoundTrip(benchmark::State& state) {
  std::uint64_t peer_turns = 0;
  on_plain_boost_fiber_thread(state, [&] {
    bool stop = false;
    bf::fiber peer([&] {
      while (!stop) {
        ++peer_turns;
        boost::this_fiber::yield();
      }
    });
    boost::this_fiber::yield();  // let the peer start
    for (auto _ : state) boost::this_fiber::yield();
    stop = true;
    peer.join();
  });
  benchmark::DoNotOptimize(peer_turns);
  if (peer_turns < static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("peer did not run");
  report_per_op(state, 1);
}
BENCHMARK(BM_BoostFiber_YieldRoundTrip);

// promise/future round trip between two fibers: the waiter hands a promise to a
// server fiber (which yields in a loop, like an event loop's turn) and waits with
// future::get(); the server completes it.
void BM_BoostFiber_PromiseRoundTrip(benchmark::State& state) {
  std::int64_t sum = 0;
  on_plain_boost_fiber_thread(state, [&] {
    bool stop = false;
    bf::promise<int>* pending = nullptr;
    int value = 0;
    bf::fiber server([&] {
      while (!stop) {
        if (bf::promise<int>* p = std::exchange(pending, nullptr)) p->set_value(value);
        boost::this_fiber::yield();
      }
    });
    for (auto _ : state) {
      bf::promise<int> p;
      bf::future<int> f = p.get_future();
      pending = &p;
      sum += f.get();
      ++value;
    }
    stop = true;
    server.join();
  });
  benchmark::DoNotOptimize(sum);
  const auto n = state.iterations();
  if (sum != n * (n - 1) / 2) state.SkipWithError("wrong results");
  report_per_op(state, 1);
}
BENCHMARK(BM_BoostFiber_PromiseRoundTrip);

// shared_future::get() on a ready future: Boost.Fiber's "wait on a done future".
void BM_BoostFiber_ReadyFutureGet(benchmark::State& state) {
  std::int64_t sum = 0;
  on_plain_boost_fiber_thread(state, [&] {
    bf::promise<int> p;
    bf::shared_future<int> f = p.get_future().share();
    p.set_value(1);
    for (auto _ : state) {
      benchmark::DoNotOptimize(f);
      sum += f.get();
    }
  });
  benchmark::DoNotOptimize(sum);
  if (sum != state.iterations()) state.SkipWithError("wrong results");
  report_per_op(state, 1);
}
BENCHMARK(BM_BoostFiber_ReadyFutureGet);

// Fiber create + join (pooled stacks), one at a time.
void BM_BoostFiber_CreateJoin(benchmark::State& state) {
  std::uint64_t ran = 0;
  on_plain_boost_fiber_thread(state, [&] {
    bctx::pooled_fixedsize_stack stacks(kStackSize);
    bf::fiber(std::allocator_arg, stacks, [&ran] { ++ran; }).join();  // warm
    for (auto _ : state) bf::fiber(std::allocator_arg, stacks, [&ran] { ++ran; }).join();
  });
  benchmark::DoNotOptimize(ran);
  if (ran != static_cast<std::uint64_t>(state.iterations()) + 1) state.SkipWithError("fiber did not run");
  report_per_op(state, 1);
}
BENCHMARK(BM_BoostFiber_CreateJoin);

// Create a batch of fibers (pooled stacks), then join them all; per fiber.
void BM_BoostFiber_CreateJoinBatch(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  std::uint64_t ran = 0;
  on_plain_boost_fiber_thread(state, [&] {
    bctx::pooled_fixedsize_stack stacks(kStackSize);
    std::vector<bf::fiber> fibers;
    fibers.reserve(batch);
    auto one_batch = [&] {
      for (std::size_t i = 0; i < batch; ++i) fibers.emplace_back(std::allocator_arg, stacks, [&ran] { ++ran; });
      for (auto& f : fibers) f.join();
      fibers.clear();
    };
    one_batch();  // warm
    for (auto _ : state) {
      one_batch();
      benchmark::ClobberMemory();
    }
  });
  benchmark::DoNotOptimize(ran);
  if (ran != static_cast<std::uint64_t>(state.iterations() + 1) * batch) state.SkipWithError("not every fiber ran");
  report_per_op(state, static_cast<double>(batch));
}
BENCHMARK(BM_BoostFiber_CreateJoinBatch)->Arg(kBatch);

// Cross-thread: another OS thread completes a Boost.Fiber promise the main fiber of
// this thread waits on (round_robin sleeps on its condition variable). Wall time.
void BM_BoostFiber_WaitCrossThread(benchmark::State& state) {
  std::int64_t sum = 0;
  on_plain_boost_fiber_thread(state, [&] {
    Completer<bf::promise<int>> other;  // its thread sets up its own Boost.Fiber runtime
    for (auto _ : state) {
      bf::promise<int> p;
      bf::future<int> f = p.get_future();
      other.complete(std::move(p), 1);
      sum += f.get();
    }
  });
  benchmark::DoNotOptimize(sum);
  if (sum != state.iterations()) state.SkipWithError("wrong results");
  report_per_op(state, 1);
}
BENCHMARK(BM_BoostFiber_WaitCrossThread)->UseRealTime();

// =====================================================================================
// Reference: OS threads
// =====================================================================================

void BM_StdThread_CreateJoin(benchmark::State& state) {
  std::atomic<std::uint64_t> ran{0};
  for (auto _ : state) std::thread([&ran] { ran.fetch_add(1, std::memory_order_relaxed); }).join();
  if (ran.load() != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("thread did not run");
  report_per_op(state, 1);
}
BENCHMARK(BM_StdThread_CreateJoin)->UseRealTime();

// The spawn benchmarks run last. With this fiberloop, finished fibers stay in Boost's
// terminated queue (stacks unreleased, so never pooled) until something gives Boost's
// dispatcher a turn on this thread -- that can be the first cross-thread wakeup of a
// later benchmark, which then pays for freeing every fiber spawned here (seconds).
// Running them last keeps that bill out of the other benchmarks' numbers.
BENCHMARK(BM_Fiberloop_SpawnBatch)->Arg(kBatch);
BENCHMARK(BM_Fiberloop_SpawnOneAndWait);

}  // namespace

// Defaults keep the whole binary well under a minute; flags given on the command
// line come later in argv and win.
int main(int argc, char** argv) {
  static char default_min_time[] = "--benchmark_min_time=0.2";
  std::vector<char*> args{argv[0], default_min_time};
  args.insert(args.end(), argv + 1, argv + argc);
  int count = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
