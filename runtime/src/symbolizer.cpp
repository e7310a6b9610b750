// Function names for stack addresses from the ELF symbol tables (symbolizer.hpp).
//
// Why not a library: glibc's backtrace_symbols() and dladdr() see only exported
// symbols (.dynsym), so an executable's own functions stay nameless unless it links
// with -rdynamic; Boost.Stacktrace's backends need Debian's libboost-stacktrace-dev
// (and its libbacktrace reads all the DWARF of every loaded object first: over half
// a second with libc6-dbg installed, too slow for a report due while the loop still
// blocks). The symbol tables alone name every function, cost a linear scan, and are
// there in Release builds without debug information.

#include "symbolizer.hpp"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <new>
#include <utility>

#include "loop_internals.hpp"

namespace fiberloop::detail {

namespace {

constexpr unsigned char kNativeClass = __ELF_NATIVE_CLASS == 64 ? ELFCLASS64 : ELFCLASS32;

/// An object loaded in the process: where its segments are and which file it is.
struct Module {
  std::string path;             // empty: no file to read (the vDSO)
  std::uintptr_t bias = 0;      // its symbols' values + bias = addresses
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> segments;  // [low, high) loaded
};

std::vector<Module> loaded_modules() {
  std::vector<Module> modules;
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) -> int {
        auto& out = *static_cast<std::vector<Module>*>(data);
        try {
          Module module;
          module.bias = info->dlpi_addr;
          if (info->dlpi_name && info->dlpi_name[0] == '/') {
            module.path = info->dlpi_name;
          } else if (out.empty()) {
            module.path = "/proc/self/exe";  // the executable comes first, unnamed
          }
          for (int i = 0; i < info->dlpi_phnum; ++i) {
            const ElfW(Phdr)& header = info->dlpi_phdr[i];
            if (header.p_type != PT_LOAD) continue;
            const std::uintptr_t low = info->dlpi_addr + header.p_vaddr;
            module.segments.emplace_back(low, low + header.p_memsz);
          }
          out.push_back(std::move(module));
          return 0;
        } catch (const std::bad_alloc&) {
          return 1;  // what was found so far will do
        }
      },
      &modules);
  return modules;
}

/// A file mapped read-only, unmapped on destruction.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat info {};
    if (::fstat(fd, &info) == 0 && info.st_size > 0) {
      void* mapped = ::mmap(nullptr, static_cast<std::size_t>(info.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
      if (mapped != MAP_FAILED) {
        data_ = static_cast<const unsigned char*>(mapped);
        size_ = static_cast<std::size_t>(info.st_size);
      }
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }

 private:
  const unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
};

/// A symbol table of a mapped ELF file: .symtab if it has one (every function), else
/// .dynsym (the exported ones). Empty when the file is not a native ELF file.
class SymbolTable {
 public:
  explicit SymbolTable(const MappedFile& file) {
    const unsigned char* data = file.data();
    const std::size_t size = file.size();
    if (!data || size < sizeof(ElfW(Ehdr))) return;
    const auto* header = reinterpret_cast<const ElfW(Ehdr)*>(data);
    if (std::memcmp(header->e_ident, ELFMAG, SELFMAG) != 0 || header->e_ident[EI_CLASS] != kNativeClass ||
        header->e_shentsize != sizeof(ElfW(Shdr)) || header->e_shoff > size ||
        header->e_shnum > (size - header->e_shoff) / sizeof(ElfW(Shdr)))
      return;
    const auto* sections = reinterpret_cast<const ElfW(Shdr)*>(data + header->e_shoff);
    for (const unsigned type : {SHT_SYMTAB, SHT_DYNSYM}) {
      for (std::size_t i = 0; i < header->e_shnum; ++i) {
        const ElfW(Shdr)& table = sections[i];
        if (table.sh_type != type || table.sh_link >= header->e_shnum) continue;
        const ElfW(Shdr)& strings = sections[table.sh_link];
        if (table.sh_offset > size || table.sh_size > size - table.sh_offset || strings.sh_offset > size ||
            strings.sh_size > size - strings.sh_offset)
          continue;
        symbols_ = reinterpret_cast<const ElfW(Sym)*>(data + table.sh_offset);
        count_ = table.sh_size / sizeof(ElfW(Sym));
        strings_ = reinterpret_cast<const char*>(data + strings.sh_offset);
        strings_size_ = strings.sh_size;
        return;
      }
    }
  }

  /// The (mangled) name of the function whose code holds `value` (an address less
  /// the module's bias), or null.
  const char* function_at(std::uintptr_t value) const noexcept {
    const ElfW(Sym)* best = nullptr;
    for (std::size_t i = 0; i < count_; ++i) {
      const ElfW(Sym)& symbol = symbols_[i];
      const unsigned type = ELF64_ST_TYPE(symbol.st_info);  // ELF32_ST_TYPE is the same
      if ((type != STT_FUNC && type != STT_GNU_IFUNC) || symbol.st_shndx == SHN_UNDEF) continue;
      if (value < symbol.st_value || value - symbol.st_value >= symbol.st_size) continue;
      if (!best || symbol.st_size < best->st_size) best = &symbol;  // the innermost of nested ones
    }
    if (!best || best->st_name >= strings_size_) return nullptr;
    return strings_ + best->st_name;
  }

 private:
  const ElfW(Sym)* symbols_ = nullptr;
  std::size_t count_ = 0;
  const char* strings_ = nullptr;
  std::size_t strings_size_ = 0;
};

}  // namespace

std::string describe_frames(const std::vector<std::uintptr_t>& frames) {
  // A return address points past its call: look up the call itself.
  std::vector<std::uintptr_t> lookups(frames);
  for (std::size_t i = 1; i < lookups.size(); ++i) --lookups[i];

  const std::vector<Module> modules = loaded_modules();
  std::vector<const Module*> module_of(frames.size(), nullptr);
  for (std::size_t i = 0; i < frames.size(); ++i)
    for (const Module& module : modules)
      for (const auto& [low, high] : module.segments)
        if (lookups[i] >= low && lookups[i] < high) module_of[i] = &module;

  std::vector<std::string> names(frames.size());
  for (const Module& module : modules) {
    bool needed = false;
    for (const Module* m : module_of) needed = needed || m == &module;
    if (!needed || module.path.empty()) continue;
    const MappedFile file(module.path);
    const SymbolTable symbols(file);
    for (std::size_t i = 0; i < frames.size(); ++i) {
      if (module_of[i] != &module) continue;
      if (const char* name = symbols.function_at(lookups[i] - module.bias)) names[i] = demangle(name);
    }
  }

  std::string out;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    char line[64];
    std::snprintf(line, sizeof line, "    #%zu 0x%" PRIxPTR " in ", i, frames[i]);
    out += line;
    Dl_info found{};
    if (names[i].empty() && ::dladdr(reinterpret_cast<void*>(lookups[i]), &found) != 0 && found.dli_sname)
      names[i] = demangle(found.dli_sname);  // the vDSO's, say
    if (!names[i].empty()) {
      out += names[i];
    } else if (module_of[i] && !module_of[i]->path.empty()) {
      std::snprintf(line, sizeof line, "+0x%" PRIxPTR ")", lookups[i] - module_of[i]->bias);
      out += "?? (" + module_of[i]->path + line;
    } else {
      out += "??";
    }
    out += '\n';
  }
  return out;
}

}  // namespace fiberloop::detail
