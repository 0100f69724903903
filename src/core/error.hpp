#pragma once
// Errors the tool reports to the user. InputError (bad file or bad option) maps to exit status 2.
#include <functional>
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

// An option's value that the library cannot use. The library names options by their own names ("topk",
// "block_size", "checkpoint_dir"): the message is a template in which {name} stands for an option, what() spells
// each as its plain name, and a front end spells them its own way (the CLI as its flags: "--topk", "--checkpoint").
class OptionError : public UsageError {
 public:
  using Spelling = std::function<std::string(const std::string& name)>;
  // option: the option whose value is wrong; message: the template, e.g. "{topk} must be at least 1 (got 0)".
  OptionError(std::string option, std::string message)
      : UsageError(render(message, [](const std::string& name) { return name; })),
        option_(std::move(option)),
        template_(std::move(message)) {}
  const std::string& option() const { return option_; }
  std::string message(const Spelling& spell) const { return render(template_, spell); }

 private:
  // {name} with a name of a lower-case letter, then lower-case letters, digits and '_' is an option; anything else
  // (a user's value that holds braces) is kept as it is.
  static std::string render(const std::string& text, const Spelling& spell) {
    std::string out;
    size_t at = 0;
    for (size_t open = text.find('{'); open != std::string::npos; open = text.find('{', open + 1)) {
      const size_t close = text.find('}', open);
      if (close == std::string::npos) break;
      const std::string name = text.substr(open + 1, close - open - 1);
      const bool is_name = !name.empty() && name[0] >= 'a' && name[0] <= 'z' &&
                           name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") == std::string::npos;
      if (!is_name) continue;
      out += text.substr(at, open - at) + spell(name);
      at = close + 1;
      open = close;
    }
    return out + text.substr(at);
  }
  std::string option_, template_;
};

}  // namespace hisa
