#include "io/attribute_probe.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "io/h5.hpp"

// Defined only when a sanitizer runtime is linked (the fuzz build).
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace hisa {

namespace {

std::atomic<int> g_timeout_seconds{kDefaultProbeTimeoutSeconds};

// The child's messages to the parent, as binary records (names and values come from the file and may hold any
// byte): a kind, then three length-prefixed strings: the object's path, what is read, and the value.
enum class Record : char { Step = 's', Fail = 'f', Value = 'v' };

class ChildChannel {
 public:
  explicit ChildChannel(int fd) : fd_(fd) {}
  void step(const std::string& where, const std::string& what) { send(Record::Step, where, what, ""); }
  void fail(const std::string& where, const std::string& what) { send(Record::Fail, where, what, ""); }
  void value(const std::string& where, const std::string& name, const std::string& v) { send(Record::Value, where, name, v); }

 private:
  void send(Record kind, const std::string& a, const std::string& b, const std::string& c) {
    std::string out(1, char(kind));
    for (const std::string* s : {&a, &b, &c}) {
      const uint32_t n = uint32_t(s->size());
      out.append(reinterpret_cast<const char*>(&n), sizeof n);
      out += *s;
    }
    for (size_t done = 0; done < out.size();) {
      ssize_t n = ::write(fd_, out.data() + done, out.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      done += size_t(n);
    }
  }
  int fd_;
};

struct AttributeWalk {
  hid_t object;
  std::string where;
  ChildChannel* out;
};

// Reads one single-valued variable-length string attribute as h5::read_string_attribute would and sends its value.
// Other attributes are left alone: their values sit in the object header and reading them follows no pointer;
// arrays the loader refuses before reading.
herr_t read_one_attribute(hid_t, const char* name, const H5A_info_t*, void* data) {
  auto* walk = static_cast<AttributeWalk*>(data);
  const std::string what = std::string("attribute '") + name + "'";
  walk->out->step(walk->where, what);
  h5::Handle attr = h5::attribute(H5Aopen(walk->object, name, H5P_DEFAULT));
  if (!attr) return 0;
  h5::Handle type = h5::datatype(H5Aget_type(attr.get()));
  h5::Handle space = h5::dataspace(H5Aget_space(attr.get()));
  if (!type || !space || H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) <= 0 ||
      H5Sget_simple_extent_npoints(space.get()) != 1) {
    return 0;
  }
  try {
    walk->out->value(walk->where, name, h5::read_variable_string(attr.get(), type.get(), space.get(), name));
  } catch (const std::exception&) {
    walk->out->fail(walk->where, what + " (a variable-length string whose stored length or heap reference is damaged)");
  }
  return 0;
}

void read_attributes(hid_t object, const std::string& where, ChildChannel& log) {
  AttributeWalk walk{object, where, &log};
  hsize_t idx = 0;
  H5Aiterate2(object, H5_INDEX_NAME, H5_ITER_INC, &idx, read_one_attribute, &walk);
}

std::vector<std::string> members(hid_t group, const std::string& where, ChildChannel& log) {
  log.step(where, "the group's members");
  try {
    return h5::child_names(group);
  } catch (const std::exception&) {
    return {};
  }
}

// Whether the object behind hard link `name` opens here. A damaged object header can state any size, and
// libhdf5 allocates it before reading (seen: 4 GiB): here, with the address space capped, that fails at once,
// and the parent must not try again uncapped, so it is reported. Soft and external links are left to the
// loader (a dangling one reads no header).
bool header_opens(hid_t parent, const std::string& name, const std::string& where, ChildChannel& log) {
  H5L_info_t info{};
  if (H5Lget_info(parent, name.c_str(), &info, H5P_DEFAULT) < 0 || info.type != H5L_TYPE_HARD) return true;
  const hid_t id = H5Oopen(parent, name.c_str(), H5P_DEFAULT);
  if (id < 0) {
    log.fail(where, "the object's header (damaged: libhdf5 cannot read it within a 256 MiB allocation)");
    return false;
  }
  H5Oclose(id);
  return true;
}

// The objects DumpReader opens: root, samples (groups under root), layers (groups under a sample) and the
// datasets of a layer (whose 'encoding' it reads).
void walk_file(const std::string& path, bool follow_external, ChildChannel& log) {
  // An external link not followed leads to no object the loader reads.
  const auto skipped = [&](hid_t parent, const std::string& name) {
    return !follow_external && h5::external_link_target(parent, name).has_value();
  };
  h5::silence_errors();
  log.step("", "the file's superblock and root group");
  h5::Handle file = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (!file) {
    // As for an object's header (header_opens): a damaged root header can state any size (seen: 3 GiB), which
    // fails here within the cap; the parent must not open the file uncapped.
    log.fail("", "the file's superblock and root group (truncated or damaged: libhdf5 cannot open them within a "
                 "256 MiB allocation)");
    return;
  }
  hid_t root = file.get();
  read_attributes(root, "/", log);
  for (const auto& sample : members(root, "/", log)) {
    const std::string sample_path = "/" + sample;
    log.step(sample_path, "the group");
    if (skipped(root, sample) || !header_opens(root, sample, sample_path, log) || !h5::child_is_group(root, sample)) continue;
    h5::Handle sg = h5::group(H5Gopen2(root, sample.c_str(), H5P_DEFAULT));
    if (!sg) continue;
    read_attributes(sg.get(), sample_path, log);
    for (const auto& layer : members(sg.get(), sample_path, log)) {
      const std::string layer_path = sample_path + "/" + layer;
      log.step(layer_path, "the group");
      if (skipped(sg.get(), layer) || !header_opens(sg.get(), layer, layer_path, log) || !h5::child_is_group(sg.get(), layer)) continue;
      h5::Handle lg = h5::group(H5Gopen2(sg.get(), layer.c_str(), H5P_DEFAULT));
      if (!lg) continue;
      read_attributes(lg.get(), layer_path, log);
      for (const auto& name : members(lg.get(), layer_path, log)) {
        const std::string dataset_path = layer_path + "/" + name;
        log.step(dataset_path, "the dataset's header");
        if (skipped(lg.get(), name) || !header_opens(lg.get(), name, dataset_path, log) || !h5::child_is_dataset(lg.get(), name)) continue;
        h5::Handle d = h5::dataset(H5Dopen2(lg.get(), name.c_str(), H5P_DEFAULT));
        if (d) read_attributes(d.get(), dataset_path, log);
      }
    }
  }
}

// A damaged length of a variable-length string makes HDF5 allocate and clear up to 4 GiB for it: slow, and the
// parent would do it again. With the child's address space capped, that allocation fails at once and the read
// is reported as failed. The cap is relative to what the process already maps (a sanitizer maps terabytes).
void cap_address_space(uint64_t extra_bytes) {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return;
  unsigned long long pages = 0;
  const bool ok = std::fscanf(f, "%llu", &pages) == 1;
  std::fclose(f);
  if (!ok) return;
  rlimit limit{};
  if (::getrlimit(RLIMIT_AS, &limit) != 0) return;
  const uint64_t want = uint64_t(pages) * uint64_t(::sysconf(_SC_PAGESIZE)) + extra_bytes;
  if (limit.rlim_max == RLIM_INFINITY || want < limit.rlim_max) limit.rlim_cur = want;
  ::setrlimit(RLIMIT_AS, &limit);
}

[[noreturn]] void run_child(const std::string& path, bool follow_external, int fd) {
  // A crash here must end this process with the signal, not with a report from a handler installed by the
  // parent (a sanitizer's or libFuzzer's, in the fuzz build): the parent turns the signal into an InputError.
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::signal(sig, SIG_DFL);
  // In the fuzz build ASan also catches libhdf5's bad copies here (memcpy-param-overlap in H5HG_read): expected
  // in this process, so no report on the terminal and no crash file from libFuzzer's death callback; the parent
  // reports the non-zero exit.
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(nullptr);
  if (int null = ::open("/dev/null", O_WRONLY); null >= 0) ::dup2(null, STDERR_FILENO);
  cap_address_space(uint64_t(256) << 20);  // far above any real attribute
  ChildChannel log(fd);
  try {
    walk_file(path, follow_external, log);
  } catch (...) {
    // Any ordinary failure is for the loader to report.
  }
  ::_exit(0);  // no atexit handlers or stream flushes of the parent's state
}

// What the child said: the values, the last step it began and the first read HDF5 refused.
struct ChildReport {
  std::string pending;  // bytes of an incomplete record
  ProbedAttributes values;
  std::pair<std::string, std::string> last_step{"", "the file"}, first_fail;

  void add(const char* data, size_t n) {
    pending.append(data, n);
    size_t at = 0;
    for (;;) {
      std::string field[3];
      size_t p = at + 1;
      bool complete = p <= pending.size();
      for (int i = 0; complete && i < 3; ++i) {
        uint32_t len = 0;
        if (pending.size() - p < sizeof len) {
          complete = false;
          break;
        }
        std::memcpy(&len, pending.data() + p, sizeof len);
        p += sizeof len;
        if (pending.size() - p < len) {
          complete = false;
          break;
        }
        field[i] = pending.substr(p, len);
        p += len;
      }
      if (!complete) break;
      switch (Record(pending[at])) {
        case Record::Step: last_step = {field[0], field[1]}; break;
        case Record::Fail: if (first_fail.second.empty()) first_fail = {field[0], field[1]}; break;
        case Record::Value: values.add(field[0], field[1], field[2]); break;
      }
      at = p;
    }
    pending.erase(0, at);
  }
};

}  // namespace

void set_attribute_probe_timeout(int seconds) { g_timeout_seconds = std::max(seconds, 1); }

const std::string* ProbedAttributes::find(const std::string& object_path, const std::string& name) const {
  auto it = values_.find({object_path, name});
  return it == values_.end() ? nullptr : &it->second;
}

void ProbedAttributes::add(std::string object_path, std::string name, std::string value) {
  values_[{std::move(object_path), std::move(name)}] = std::move(value);
}

ProbedAttributes probe_attributes(const std::string& path, bool follow_external) {
  const int timeout_seconds = g_timeout_seconds;
  int fds[2];
  if (::pipe(fds) != 0) throw InputError(path, "", std::string("cannot create a pipe: ") + std::strerror(errno));
  pid_t child = ::fork();
  if (child < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw InputError(path, "", std::string("cannot start a process to read the file's attributes: ") + std::strerror(errno));
  }
  if (child == 0) {
    ::close(fds[0]);
    run_child(path, follow_external, fds[1]);
  }
  ::close(fds[1]);

  // Drain the pipe until the child closes it (a full pipe would block the child), within the time limit.
  ChildReport report;
  bool timed_out = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int r = ::poll(&p, 1, int(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;  // timeout is caught at the top
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the child exited or crashed
    report.add(buf, size_t(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(child, SIGKILL);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    if (report.first_fail.second.empty()) return std::move(report.values);
    const auto& [where, what] = report.first_fail;
    throw InputError(path, where, "cannot read " + what);
  }

  const auto& [where, what] = report.last_step;
  std::string how;
  if (timed_out) {
    how = "did not finish within " + std::to_string(timeout_seconds) + " s";
  } else if (WIFSIGNALED(status)) {
    how = "crashed (" + std::string(strsignal(WTERMSIG(status))) + ")";
  } else {
    how = "failed (exit status " + std::to_string(WEXITSTATUS(status)) + ")";
  }
  throw InputError(path, where,
                   "the HDF5 library " + how + " while reading " + what +
                       "; the file is damaged (hisa reads a file's attributes in a separate process first, so that "
                       "this is reported instead of ending the program)");
}

}  // namespace hisa
