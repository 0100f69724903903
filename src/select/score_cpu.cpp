#include "select/score_cpu.hpp"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace hisa {

namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowMap = Eigen::Map<const RowMatrix>;

// Keys per GEMM: the [n·H, tile] product stays in L2 for the epilogue.
constexpr int64_t kKeyTile = 256;

}  // namespace

void score_keys(const ScoreInputs& in, const float* keys, const float* scales, int64_t count, float* out,
                int64_t out_stride) {
  const int64_t rows = in.queries * in.heads;
  if (rows == 0 || count == 0) return;
  // Callers parallelise over queries. Eigen parallelises a GEMM itself whenever the calling team has one
  // thread, which includes a parallel region of one thread (--threads 1): a team per 256-key tile, many
  // times slower. Inside a region, one thread per GEMM; the setting ends with the region's implicit task.
  if (omp_get_level() > 0) omp_set_num_threads(1);
  ConstRowMap q(in.q, rows, in.dim);
  thread_local RowMatrix dots;
  for (int64_t j0 = 0; j0 < count; j0 += kKeyTile) {
    const int64_t tile = std::min(kKeyTile, count - j0);
    ConstRowMap k(keys + j0 * in.dim, tile, in.dim);
    dots.resize(rows, tile);
    dots.noalias() = q * k.transpose();
    for (int64_t i = 0; i < in.queries; ++i) {
      float* dst = out + i * out_stride + j0;
      const float* wi = in.w + i * in.heads;
      std::fill(dst, dst + tile, 0.0f);
      for (int64_t h = 0; h < in.heads; ++h) {  // fixed head order: the sum is the same in every path
        const float wh = wi[h];
        const float* d = dots.data() + (i * in.heads + h) * tile;
        for (int64_t j = 0; j < tile; ++j) dst[j] += wh * std::max(d[j], 0.0f);
      }
      const float* sc = scales + j0;
      for (int64_t j = 0; j < tile; ++j) {
        float v = dst[j] * sc[j];
        dst[j] = std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
      }
    }
  }
}

void score_positions(const float* q, const float* w, int64_t heads, int64_t dim, const float* keys,
                     const float* scales, std::span<const int64_t> positions, float* out) {
  constexpr int64_t kLanes = 8;
  thread_local std::vector<float> tile;  // [dim][kLanes]: the lanes' keys, transposed
  tile.resize(size_t(dim * kLanes));
  const int64_t n = int64_t(positions.size());
  for (int64_t j0 = 0; j0 < n; j0 += kLanes) {
    const int64_t lanes = std::min(kLanes, n - j0);
    for (int64_t l = 0; l < kLanes; ++l) {
      const float* key = keys + positions[size_t(j0 + std::min(l, lanes - 1))] * dim;
      for (int64_t d = 0; d < dim; ++d) tile[size_t(d * kLanes + l)] = key[d];
    }
    float total[kLanes] = {};
    for (int64_t h = 0; h < heads; ++h) {
      const float* qh = q + h * dim;
      float dot[kLanes] = {};
      for (int64_t d = 0; d < dim; ++d) {
        const float qd = qh[d];
        const float* kd = tile.data() + d * kLanes;
        for (int64_t l = 0; l < kLanes; ++l) dot[l] += qd * kd[l];
      }
      for (int64_t l = 0; l < kLanes; ++l) total[l] += w[h] * std::max(dot[l], 0.0f);
    }
    for (int64_t l = 0; l < lanes; ++l) {
      const float v = scales[positions[size_t(j0 + l)]] * total[l];
      out[j0 + l] = std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
    }
  }
}

double abs_score(const QueryBatch& b, int64_t i, const float* key, float scale) {
  double total = 0;
  for (int64_t h = 0; h < b.heads; ++h) {
    double dot = 0;
    for (int64_t d = 0; d < b.dim; ++d) dot += std::fabs(double(b.q_row(i, h)[d]) * key[d]);
    total += std::fabs(double(b.w_row(i)[h])) * dot;
  }
  return total * std::fabs(double(scale));
}

}  // namespace hisa
