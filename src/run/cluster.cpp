#include "run/cluster.hpp"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#ifdef HISA_HAVE_MPI
#include <mpi.h>
#endif

namespace hisa {

namespace {

// Open MPI's, PMIx's and the PMI launchers' variables: present only in processes that mpirun/srun started.
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}

}  // namespace

bool built_with_mpi() {
#ifdef HISA_HAVE_MPI
  return true;
#else
  return false;
#endif
}

Cluster& Cluster::get() {
  static Cluster cluster;
  return cluster;
}

Cluster::Cluster() {
#ifdef HISA_HAVE_MPI
  if (launched_by_mpi()) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm node;  // the ranks that share this node's memory
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_size(node, &local_size_);
    MPI_Comm_free(&node);
    mpi_ = true;
  }
#endif
}

Cluster::~Cluster() {
#ifdef HISA_HAVE_MPI
  if (mpi_) MPI_Finalize();
#endif
}

void Cluster::gather([[maybe_unused]] std::vector<std::optional<std::string>>& results) const {
  if (size_ == 1) return;
#ifdef HISA_HAVE_MPI
  // Each rank sends (index, bytes) pairs; rank 0 receives from every other rank in rank order.
  constexpr int kCountTag = 1, kIndexTag = 2, kBytesTag = 3;
  if (rank_ != 0) {
    std::vector<long long> mine;
    for (size_t i = 0; i < results.size(); ++i) {
      if (results[i]) mine.push_back((long long)i);
    }
    long long n = (long long)mine.size();
    MPI_Send(&n, 1, MPI_LONG_LONG, 0, kCountTag, MPI_COMM_WORLD);
    for (long long i : mine) {
      const std::string& bytes = *results[size_t(i)];
      long long header[2] = {i, (long long)bytes.size()};
      MPI_Send(header, 2, MPI_LONG_LONG, 0, kIndexTag, MPI_COMM_WORLD);
      // Large results go in pieces below INT_MAX bytes.
      for (size_t at = 0; at < bytes.size(); at += size_t(1) << 30) {
        const int len = int(std::min(bytes.size() - at, size_t(1) << 30));
        MPI_Send(bytes.data() + at, len, MPI_BYTE, 0, kBytesTag, MPI_COMM_WORLD);
      }
    }
    return;
  }
  for (int from = 1; from < size_; ++from) {
    long long n = 0;
    MPI_Recv(&n, 1, MPI_LONG_LONG, from, kCountTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    for (long long k = 0; k < n; ++k) {
      long long header[2] = {0, 0};
      MPI_Recv(header, 2, MPI_LONG_LONG, from, kIndexTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (header[0] < 0 || size_t(header[0]) >= results.size()) throw std::runtime_error("MPI gather: bad unit index");
      std::string bytes(size_t(header[1]), '\0');
      for (size_t at = 0; at < bytes.size(); at += size_t(1) << 30) {
        const int len = int(std::min(bytes.size() - at, size_t(1) << 30));
        MPI_Recv(bytes.data() + at, len, MPI_BYTE, from, kBytesTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      }
      results[size_t(header[0])] = std::move(bytes);
    }
  }
#endif
}

void Cluster::sum_to_root([[maybe_unused]] std::vector<double>& values) const {
  if (size_ == 1) return;
#ifdef HISA_HAVE_MPI
  std::vector<double> sum(values.size(), 0.0);
  MPI_Reduce(values.data(), sum.data(), int(values.size()), MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank_ == 0) values = sum;
#endif
}

void Cluster::abort(int status) const {
#ifdef HISA_HAVE_MPI
  if (mpi_ && size_ > 1) MPI_Abort(MPI_COMM_WORLD, status);
#endif
  std::exit(status);
}

}  // namespace hisa
