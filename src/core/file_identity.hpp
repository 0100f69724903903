#pragma once
// Which file a path names, by device and inode: two names (a hard link, a symbolic link, "a/./b") of one file
// have one identity. Used to refuse an output that is an input, and to count an input given twice once.
#include <sys/stat.h>

#include <compare>
#include <optional>
#include <string>

namespace hisa {

struct FileIdentity {
  dev_t device = 0;
  ino_t inode = 0;
  auto operator<=>(const FileIdentity&) const = default;
};

inline FileIdentity identity_of(const struct stat& st) { return {st.st_dev, st.st_ino}; }

// The identity of the file `path` names (symbolic links followed); nullopt when it cannot be stat'ed.
inline std::optional<FileIdentity> file_identity(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return identity_of(st);
}

}  // namespace hisa
