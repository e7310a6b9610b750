#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <fiberloop/errors.hpp>

#include "loop_internals.hpp"

namespace fiberloop::detail {

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(mangled);
}

std::string describe_exception(const std::exception_ptr& error) {
  if (!error) return "(no exception)";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return demangle(abi::__cxa_current_exception_type()->name()) + ": " + e.what();
  } catch (...) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    return type ? demangle(type->name()) : std::string("unknown exception");
  }
}

void report_unhandled(std::exception_ptr error, const char* where) noexcept {
  if (IOLoop* loop = LoopInternals::running_here()) {
    LoopInternals::report(*loop, std::move(error), where);
    return;
  }
  try {
    std::fprintf(stderr, "fiberloop: unhandled exception in %s: %s\n", where, describe_exception(error).c_str());
  } catch (...) {
    std::fprintf(stderr, "fiberloop: unhandled exception in %s\n", where);
  }
}

}  // namespace fiberloop::detail
