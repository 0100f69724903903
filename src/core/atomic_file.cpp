#include "core/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <climits>
#include <mutex>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>
#include <streambuf>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/file_identity.hpp"

namespace hisa {

namespace {

namespace fs = std::filesystem;

std::string errno_text(int error) { return std::strerror(error); }

std::string directory_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

// ".NAME.hisa-XXXXXXXX.tmp" in PATH's directory; unique enough that O_EXCL rarely has to retry.
std::string temporary_name(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  static const unsigned long long seed = std::random_device{}();
  const unsigned long long tag = seed ^ (uint64_t(::getpid()) << 32) ^ (uint64_t(counter++) * 0x9e3779b97f4a7c15ull);
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "%012llx", tag & 0xffffffffffffull);
  const fs::path p(path);
  std::string name = ".";  // appended, not "." + string: GCC 12 warns falsely on that (-Wrestrict, PR 105651)
  name += p.filename().string() + ".hisa-" + suffix + ".tmp";
  return (fs::path(directory_of(path)) / name).string();
}

// A stream buffer over a file descriptor that checks every write and keeps the first error.
class CheckedFdBuffer : public std::streambuf {
 public:
  explicit CheckedFdBuffer(int fd) : fd_(fd), buffer_(size_t(1) << 16) { setp(buffer_.data(), buffer_.data() + buffer_.size()); }
  int error() const { return error_; }

 protected:
  int_type overflow(int_type c) override {
    if (!drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(c);
      pbump(1);
    }
    return traits_type::not_eof(c);
  }
  int sync() override { return drain() ? 0 : -1; }

 private:
  bool drain() {
    const char* at = pbase();
    while (at < pptr() && error_ == 0) {
      const ssize_t n = ::write(fd_, at, size_t(pptr() - at));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) error_ = n < 0 ? errno : EIO;
      else at += n;
    }
    setp(buffer_.data(), buffer_.data() + buffer_.size());
    return error_ == 0;
  }
  int fd_;
  std::vector<char> buffer_;
  int error_ = 0;
};

// Named temporaries that a stop signal removes: a fixed table of names, since a signal handler may call unlink()
// but may not allocate or take a lock. Slots are claimed and released under a lock the handler never takes.
constexpr int kSignalSlots = 64;
char g_signal_names[kSignalSlots][PATH_MAX];
std::atomic<bool> g_signal_slot_used[kSignalSlots];
std::mutex g_signal_slots_mutex;

extern "C" void remove_temporaries_and_stop(int sig) {
  for (int i = 0; i < kSignalSlots; ++i) {
    if (g_signal_slot_used[i].load()) ::unlink(g_signal_names[i]);
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

// The slot now naming the temporary (-1 when the table is full: it is then removed by its owner only). The handler
// is installed for signals whose action is still the default, so a caller's own handling stays.
int remove_on_signal(const std::string& name) {
  static std::once_flag installed;
  std::call_once(installed, [] {
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction old {};
      if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) std::signal(sig, remove_temporaries_and_stop);
    }
  });
  if (name.size() >= PATH_MAX) return -1;
  std::lock_guard lock(g_signal_slots_mutex);
  for (int i = 0; i < kSignalSlots; ++i) {
    if (!g_signal_slot_used[i].load()) {
      std::memcpy(g_signal_names[i], name.c_str(), name.size() + 1);
      g_signal_slot_used[i].store(true);
      return i;
    }
  }
  return -1;
}

void keep_on_signal(int slot) {
  if (slot < 0) return;
  std::lock_guard lock(g_signal_slots_mutex);
  g_signal_slot_used[slot].store(false);
}

bool proc_fd_usable() {
  static const bool usable = ::access("/proc/self/fd", X_OK) == 0;
  return usable;
}

}  // namespace

struct OutputFile::TemporaryFile {
  int fd = -1;
  bool unnamed = false;    // O_TMPFILE: no name until commit() links it
  std::string name;        // the named temporary (or the link made at commit)
  std::string open_path;   // what temporary_path() hands out
  std::unique_ptr<CheckedFdBuffer> buffer;
  std::unique_ptr<std::ostream> stream;
  int signal_slot = -1;    // its place among the names a signal removes

  ~TemporaryFile() {
    if (fd >= 0) ::close(fd);
    if (!name.empty()) ::unlink(name.c_str());
    keep_on_signal(signal_slot);
  }
};

OutputFile::OutputFile(std::string path, Temporary kind) : path_(std::move(path)) {
  if (is_stdout(path_)) return;
  auto t = std::make_unique<TemporaryFile>();
  const std::string dir = directory_of(path_);
  if (kind == Temporary::Unnamed && proc_fd_usable()) {
    t->fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
    if (t->fd >= 0) {
      t->unnamed = true;
      t->open_path = "/proc/self/fd/" + std::to_string(t->fd);
    }
  }
  // Without O_TMPFILE (some file systems): a named one, created exclusively, so a link planted under that name or a
  // file someone else is writing is never opened.
  for (int attempt = 0; t->fd < 0 && attempt < 100; ++attempt) {
    const std::string name = temporary_name(path_);
    t->fd = ::open(name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (t->fd >= 0) {
      t->name = t->open_path = name;
      t->signal_slot = remove_on_signal(name);
    } else if (errno != EEXIST) {
      throw UsageError("cannot create a temporary file for " + path_ + " in " + dir + ": " + errno_text(errno));
    }
  }
  if (t->fd < 0) throw UsageError("cannot create a temporary file for " + path_ + " in " + dir);
  t->buffer = std::make_unique<CheckedFdBuffer>(t->fd);
  t->stream = std::make_unique<std::ostream>(t->buffer.get());
  tmp_ = std::move(t);
}

OutputFile::~OutputFile() = default;

std::ostream& OutputFile::stream() { return tmp_ ? *tmp_->stream : std::cout; }

const std::string& OutputFile::temporary_path() const {
  if (!tmp_) throw std::logic_error("OutputFile: standard output has no temporary file");
  return tmp_->open_path;
}

void OutputFile::commit() {
  if (!tmp_) {
    std::cout.flush();
    if (!std::cout) throw UsageError("writing to standard output failed");
    return;
  }
  TemporaryFile& t = *tmp_;
  auto fail = [&](const std::string& why) {
    tmp_.reset();  // closes and removes the temporary
    throw UsageError("writing " + path_ + " failed: " + why);
  };
  t.stream->flush();
  if (t.buffer->error() != 0) fail(errno_text(t.buffer->error()));
  if (!*t.stream) fail("the stream reported an error");
  if (::fsync(t.fd) != 0) fail(errno_text(errno));
  if (t.unnamed) {
    // Give the unnamed file a unique name first: link() cannot replace the target, rename() can.
    for (int attempt = 0; t.name.empty() && attempt < 100; ++attempt) {
      const std::string name = temporary_name(path_);
      if (::linkat(AT_FDCWD, t.open_path.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0) {
        t.name = name;
      } else if (errno != EEXIST) {
        fail("cannot name the temporary file: " + errno_text(errno));
      }
    }
    if (t.name.empty()) fail("cannot name the temporary file");
  }
  const int fd = std::exchange(t.fd, -1);
  if (::close(fd) != 0) fail(errno_text(errno));
  if (::rename(t.name.c_str(), path_.c_str()) != 0) fail("cannot rename " + t.name + " to it: " + errno_text(errno));
  keep_on_signal(std::exchange(t.signal_slot, -1));
  t.name.clear();  // renamed: nothing to remove
  tmp_.reset();
}

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  OutputFile out(path);
  write(out.stream());
  out.commit();
}

namespace {

// Every input file by identity, the files inside an input directory included.
std::vector<std::pair<FileIdentity, std::string>> input_ids(const std::vector<std::string>& inputs) {
  std::vector<std::pair<FileIdentity, std::string>> ids;
  for (const auto& in : inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      for (const auto& entry : fs::directory_iterator(in, ec)) {
        if (auto id = file_identity(entry.path().string())) ids.push_back({*id, entry.path().string()});
      }
    } else if (auto id = file_identity(in)) {
      ids.push_back({*id, in});
    }
  }
  return ids;
}

void check_one_output(const OutputSpec& o, const std::vector<std::pair<FileIdentity, std::string>>& inputs) {
  const std::string stdout_hint = o.stdout_allowed ? " (or - for standard output)" : "";
  struct stat st {};
  if (::lstat(o.path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) {
      throw UsageError(o.flag + ": " + o.path + " is a symbolic link; an output is written to a new file and renamed "
                       "over its target, which would replace the link: name the file itself" + stdout_hint);
    }
    if (S_ISDIR(st.st_mode)) throw UsageError(o.flag + ": " + o.path + " is a directory; name a file");
    if (!S_ISREG(st.st_mode)) {
      throw UsageError(o.flag + ": " + o.path + " is not a regular file (a device, FIFO or socket); name a regular "
                       "file" + stdout_hint);
    }
    const FileIdentity id = identity_of(st);
    for (const auto& [input_id, input] : inputs) {
      if (input_id == id) {
        throw UsageError(o.flag + ": " + o.path + " is an input of this run" +
                         (input == o.path ? "" : " (the same file as " + input + ")") +
                         "; writing there would destroy it: choose another name");
      }
    }
  } else if (errno != ENOENT) {
    throw UsageError(o.flag + ": cannot use " + o.path + ": " + errno_text(errno));
  }
  const std::string dir = directory_of(o.path);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw UsageError(o.flag + ": " + o.path + ": the directory " + dir + " does not exist");
  try {
    OutputFile probe(o.path);  // made and discarded: proves the directory takes new files
  } catch (const UsageError& e) {
    throw UsageError(o.flag + ": " + e.what());
  }
}

}  // namespace

void check_outputs(const std::vector<OutputSpec>& outputs, const std::vector<std::string>& inputs) {
  const auto ids = input_ids(inputs);
  const OutputSpec* on_stdout = nullptr;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const OutputSpec& o = outputs[i];
    if (o.path.empty()) continue;
    if (is_stdout(o.path)) {
      if (!o.stdout_allowed) throw UsageError(o.flag + ": this output cannot go to standard output (-); name a file");
      if (on_stdout) throw UsageError(on_stdout->flag + " and " + o.flag + ": only one output can go to standard output");
      on_stdout = &o;
      continue;
    }
    check_one_output(o, ids);
    for (size_t j = 0; j < i; ++j) {
      const OutputSpec& p = outputs[j];
      if (p.path.empty() || is_stdout(p.path)) continue;
      const auto a = file_identity(o.path), b = file_identity(p.path);
      std::error_code ec_p, ec_o;
      const bool same_name = fs::weakly_canonical(p.path, ec_p) == fs::weakly_canonical(o.path, ec_o) && !ec_p && !ec_o;
      if (p.path == o.path || same_name || (a && b && *a == *b)) {
        throw UsageError(p.flag + " and " + o.flag + " name the same file, " + o.path);
      }
    }
  }
}

}  // namespace hisa
