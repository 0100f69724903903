#pragma once
// Helpers shared by the tests: a temporary directory that cleans up after itself, and a way to run a child
// process capturing its output, exit status and peak memory.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace hisa::test {

// A fresh directory under the system temp directory, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<unsigned> counter{0};
    const auto base = std::filesystem::temp_directory_path();
    for (int attempt = 0; attempt < 100; ++attempt) {
      auto candidate = base / ("hisa-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
      if (std::filesystem::create_directory(candidate)) {
        path_ = candidate;
        return;
      }
    }
    throw std::runtime_error("cannot create a temporary directory under " + base.string());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct ProcessResult {
  bool exited = false;     // false: killed by a signal (a crash)
  int status = -1;         // exit status when exited, else the signal number
  std::string output;      // stdout and stderr together
  long max_rss_kib = 0;    // peak resident set size of the child (wait4's ru_maxrss)
};

// Runs argv[0] (looked up in PATH) with the given arguments and extra environment variables ("NAME=value"),
// waits for it and returns what it did. Output goes to a file in `scratch` (a directory) so the child never
// blocks on a full pipe.
inline ProcessResult run_process(const std::vector<std::string>& argv, const std::string& scratch,
                                 const std::vector<std::string>& env = {}) {
  static std::atomic<unsigned> counter{0};
  const std::string out_path = scratch + "/process-output-" + std::to_string(counter++) + ".txt";
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) ::_exit(127);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::close(fd);
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int wstatus = 0;
  struct rusage usage {};
  while (::wait4(pid, &wstatus, 0, &usage) < 0) {
    if (errno != EINTR) throw std::runtime_error("wait4 failed");
  }
  ProcessResult r;
  r.exited = WIFEXITED(wstatus);
  r.status = r.exited ? WEXITSTATUS(wstatus) : WTERMSIG(wstatus);
  r.output = read_text(out_path);
  r.max_rss_kib = usage.ru_maxrss;
  std::error_code ec;
  std::filesystem::remove(out_path, ec);
  return r;
}

}  // namespace hisa::test
