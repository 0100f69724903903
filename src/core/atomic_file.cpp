#include "core/atomic_file.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"

namespace hisa {

void check_writable(const std::string& path, const std::string& flag) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream probe(tmp, std::ios::binary | std::ios::trunc);
    if (!probe) throw UsageError(flag + ": cannot write " + path);
  }
  std::remove(tmp.c_str());
}

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw UsageError("cannot write " + path);
    write(out);
    out.flush();
    if (!out) throw UsageError("writing " + path + " failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw UsageError("cannot rename " + tmp + " to " + path + ": " + ec.message());
}

}  // namespace hisa
