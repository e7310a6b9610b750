#pragma once
/// @file
/// The whole core API of fiberloop: futures, the IOLoop and its fibers, waiting
/// from synchronous code, a fiber-aware Semaphore, executors, stack contexts, and
/// the adapters (network, memcached, SQL).

#include <fiberloop/errors.hpp>
#include <fiberloop/future.hpp>
#include <fiberloop/io_loop.hpp>
#include <fiberloop/memcache.hpp>
#include <fiberloop/net.hpp>
#include <fiberloop/run_blocking.hpp>
#include <fiberloop/semaphore.hpp>
#include <fiberloop/sql.hpp>
#include <fiberloop/stack_context.hpp>
#include <fiberloop/thread_pool_executor.hpp>
#include <fiberloop/wait.hpp>
