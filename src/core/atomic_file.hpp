#pragma once
// Outputs that are either complete or absent, and that never land on an input.
//
// An output is written to a fresh temporary file in its own directory — unnamed (O_TMPFILE) where the file
// system allows it, so even `kill -9` leaves nothing behind; otherwise a unique hidden name created exclusively —
// checked after every write, flushed to disk, and only then renamed over the target. A failed or interrupted run
// leaves the previous file as it was. check_outputs() refuses, before any work, an output that names an input
// (the same file by device and inode, so hard links and symbolic links count), a directory, a symbolic link, a
// device, a FIFO, or a name in a directory that cannot be written.
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

namespace hisa {

// One output a command was asked to write.
struct OutputSpec {
  std::string path;              // empty: not asked for (ignored)
  std::string flag;              // as the user spelled it, for messages: "--json", "-o"
  bool stdout_allowed = false;   // "-" means standard output (text formats)
};

// UsageError naming the flag unless every output can be written as asked: "-" only where allowed and at most
// once; no output named twice; none the same file as an input (files, or the files inside an input directory);
// an existing target a regular file (not a symbolic link, directory, device, FIFO or socket); its directory
// present and writable (checked by creating and discarding a temporary file there).
void check_outputs(const std::vector<OutputSpec>& outputs, const std::vector<std::string>& inputs);

// Whether an output is standard output ("-").
inline bool is_stdout(const std::string& path) { return path == "-"; }

// A file written whole or not at all. The temporary is made by the constructor; commit() checks, flushes and
// renames it over the target; destroying an uncommitted OutputFile removes the temporary. "-" writes to
// standard output (commit() then flushes it and checks that every write reached it).
class OutputFile {
 public:
  // Named: a temporary with a name (a unique hidden one), for writers that must reopen it by a real path (HDF5
  // resolves the path it is given, which an unnamed file lacks). SIGINT, SIGTERM and SIGHUP remove such a
  // temporary before the process ends; only SIGKILL can leave it behind.
  enum class Temporary { Unnamed, Named };
  // UsageError when no temporary can be made in path's directory.
  explicit OutputFile(std::string path, Temporary kind = Temporary::Unnamed);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  std::ostream& stream();
  // A name by which another library (HDF5) can open the temporary to write it; such writers must check their own
  // writes and close the file before commit().
  const std::string& temporary_path() const;
  const std::string& path() const { return path_; }
  // UsageError ("writing PATH failed: <reason>") when any write failed; the temporary is removed then.
  void commit();

 private:
  struct TemporaryFile;
  std::string path_;
  std::unique_ptr<TemporaryFile> tmp_;
};

// OutputFile(path), write(stream), commit().
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

}  // namespace hisa
