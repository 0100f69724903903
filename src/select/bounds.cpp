#include "select/bounds.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace hisa {

BlockBounds::BlockBounds(const LayerKeys& keys, int64_t block_size)
    : block_size_(block_size), count_((keys.count + block_size - 1) / block_size), dim_(keys.dim) {
  lo_.assign(size_t(count_ * dim_), INFINITY);
  hi_.assign(size_t(count_ * dim_), -INFINITY);
  centre_.assign(size_t(count_ * dim_), 0.0f);
  radius_.assign(size_t(count_), 0.0);
  max_norm_.assign(size_t(count_), 0.0);
  scale_min_.assign(size_t(count_), INFINITY);
  scale_max_.assign(size_t(count_), 0.0f);
  // Blocks are independent: each iteration writes only its own block's entries.
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < count_; ++blk) {
    const int64_t begin = blk * block_size, end = std::min(keys.count, begin + block_size);
    float* lo = lo_.data() + blk * dim_;
    float* hi = hi_.data() + blk * dim_;
    float* c = centre_.data() + blk * dim_;
    for (int64_t s = begin; s < end; ++s) {
      const float* k = keys.row(s);
      for (int64_t d = 0; d < dim_; ++d) lo[d] = std::min(lo[d], k[d]), hi[d] = std::max(hi[d], k[d]);
      scale_min_[size_t(blk)] = std::min(scale_min_[size_t(blk)], keys.k_scale[size_t(s)]);
      scale_max_[size_t(blk)] = std::max(scale_max_[size_t(blk)], keys.k_scale[size_t(s)]);
    }
    // The box centre: its ball is never larger than the box's half-diagonal.
    for (int64_t d = 0; d < dim_; ++d) c[d] = 0.5f * (lo[d] + hi[d]);
    double radius = 0, max_norm = 0;
    for (int64_t s = begin; s < end; ++s) {
      const float* k = keys.row(s);
      double r2 = 0, n2 = 0;
      for (int64_t d = 0; d < dim_; ++d) {
        r2 += (double(k[d]) - c[d]) * (double(k[d]) - c[d]);
        n2 += double(k[d]) * double(k[d]);
      }
      radius = std::max(radius, std::sqrt(r2));
      max_norm = std::max(max_norm, std::sqrt(n2));
    }
    radius_[size_t(blk)] = radius;
    max_norm_[size_t(blk)] = max_norm;
  }
}

float BlockBounds::score_bound(const QueryBatch& b, int64_t query, int64_t block) const {
  const float* lo = lo_.data() + block * dim_;
  const float* hi = hi_.data() + block * dim_;
  const float* c = centre_.data() + block * dim_;
  const double radius = radius_[size_t(block)];
  const float* w = b.w_row(query);
  double head_sum = 0, magnitude = 0, largest_dot = 0;
  for (int64_t h = 0; h < b.heads; ++h) {
    const float* q = b.q_row(query, h);
    // Bounds on q·k over the block: the box (per-dimension extremes) and the ball (centre, radius).
    double box_hi = 0, box_lo = 0, qc = 0, qn2 = 0;
    for (int64_t d = 0; d < dim_; ++d) {
      const double a = double(q[d]) * lo[d], z = double(q[d]) * hi[d];
      box_hi += std::max(a, z);
      box_lo += std::min(a, z);
      qc += double(q[d]) * c[d];
      qn2 += double(q[d]) * double(q[d]);
    }
    const double qn = std::sqrt(qn2);
    const double upper = std::min(box_hi, qc + qn * radius), lower = std::max(box_lo, qc - qn * radius);
    // w·ReLU(x) is largest at x's upper bound for w > 0 and at its lower bound for w < 0.
    head_sum += w[h] >= 0 ? double(w[h]) * std::max(upper, 0.0) : double(w[h]) * std::max(lower, 0.0);
    magnitude += std::fabs(double(w[h])) * qn * max_norm_[size_t(block)];
    largest_dot = std::max(largest_dot, qn * max_norm_[size_t(block)]);
  }
  // Every partial sum of the fp32 score (dot products, weighted head sum, times the scale) is at most
  // ‖q‖·‖k‖, Σ|w|·‖q‖·‖k‖ or that times the scale in magnitude. When one may reach FLT_MAX the computed score
  // may have overflowed to +inf however small the exact value is, and no finite number bounds it.
  constexpr double kOverflow = 0.5 * double(std::numeric_limits<float>::max());
  if (largest_dot >= kOverflow || magnitude >= kOverflow || magnitude * scale_max_[size_t(block)] >= kOverflow) {
    return std::numeric_limits<float>::infinity();
  }
  const double scale = head_sum >= 0 ? scale_max_[size_t(block)] : scale_min_[size_t(block)];
  // fp32 dot products of length D and a head sum of length H err by at most (D + H)·2^-24 of the
  // magnitude Σ_h |w|·‖q‖·‖k‖ (·scale); 4x that keeps the bound safe whatever the summation order.
  const double margin = 4.0 * double(dim_ + b.heads) * 0x1p-24 * magnitude * scale_max_[size_t(block)];
  // Rounding to float may lose up to half an ulp: step up one ulp so the bound stays a bound.
  return std::nextafter(float(head_sum * scale + margin), INFINITY);
}

}  // namespace hisa
