#pragma once
// The processes of one run: a single process, or the ranks of an MPI job (Open MPI) when the binary was built
// with MPI and started by mpirun. MPI is initialised on first use and only when a launcher's environment is
// present, so every other use of the binary never touches it.
#include <optional>
#include <string>
#include <vector>

namespace hisa {

class Cluster {
 public:
  static Cluster& get();
  int rank() const { return rank_; }
  int size() const { return size_; }
  // This rank's index among the ranks on its node, and their number (0 and 1 without MPI).
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  // Collective: rank 0 receives every rank's entries (filled on exactly one rank each); others keep theirs.
  void gather(std::vector<std::optional<std::string>>& results) const;
  // Collective: element-wise sums, on rank 0.
  void sum_to_root(std::vector<double>& values) const;
  // Ends every rank of the job with `status` after an error on this one (a no-op without MPI ranks).
  [[noreturn]] void abort(int status) const;
  ~Cluster();

 private:
  Cluster();
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  bool mpi_ = false;
};

// Whether this build can run under MPI (built with HISA_ENABLE_MPI and Open MPI found).
bool built_with_mpi();

}  // namespace hisa
