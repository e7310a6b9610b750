#pragma once
// Names the functions of a captured stack (the watchdog's reports). Internal.

#include <cstdint>
#include <string>
#include <vector>

namespace fiberloop::detail {

/// One line per frame, innermost first ("    #2 0x55d7bc071484 in foo::bar()"):
/// frames[0] is an exact address, the others return addresses. Names come from the
/// ELF symbol tables of the executable and its libraries — .symtab, so static and
/// unexported functions too, without debug information; .dynsym where a library is
/// stripped — demangled. An address no symbol covers shows its file and offset
/// ("?? (/usr/lib/libfoo.so+0x1234)"), for addr2line. Reads the files anew each time
/// (no state, any thread): it runs only when a report is made.
std::string describe_frames(const std::vector<std::uintptr_t>& frames);

}  // namespace fiberloop::detail
