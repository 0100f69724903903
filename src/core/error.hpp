#pragma once
// Errors the tool reports to the user. InputError (bad file or bad option) maps to exit status 2.
#include <stdexcept>
#include <string>

namespace hisa {

// A problem with the user's input: names the file and the HDF5 path so the user can find it.
class InputError : public std::runtime_error {
 public:
  InputError(std::string file, std::string path, const std::string& message)
      : std::runtime_error(compose(file, path, message)), file_(std::move(file)), path_(std::move(path)) {}
  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }

 private:
  static std::string compose(const std::string& file, const std::string& path, const std::string& message) {
    std::string out = file;
    if (!path.empty()) out += ": " + path;
    return out + ": " + message;
  }
  std::string file_, path_;
};

// A command-line option with a value the tool cannot use (parsed fine, but meaningless).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace hisa
