#include "io/tensor_check.hpp"

#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "select/config.hpp"

namespace hisa {

namespace {

// A float as iostream's default prints it (%g), without iostreams: a Python process may have loaded another
// libstdc++ than the module was built with, and its stream formatting then crashed the module (seen with a
// PyTorch virtualenv's interpreter).
std::string float_text(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", double(v));
  return buf;
}

}  // namespace

void fail_nonfinite(const std::string& dataset, int64_t row, int64_t element, float value, const CheckFailure& fail) {
  fail(dataset, "row " + std::to_string(row) + " holds " + float_text(value) + " at element " + std::to_string(element) +
                    " (NaN and Inf are not valid indexer inputs)");
  throw std::logic_error("check_finite: the failure handler returned");
}

void fail_bad_key_scale(int64_t row, float value, const CheckFailure& fail) {
  fail("k_scale", "row " + std::to_string(row) + " holds " + float_text(value) + " (scales must be finite and positive)");
  throw std::logic_error("check_key_scales: the failure handler returned");
}

void check_finite(const std::string& dataset, const float* values, int64_t rows, int64_t row_elems, int64_t first_row,
                  const CheckFailure& fail) {
  // All finite is the common case: checked on every core; only a failure looks for the first bad value.
  const int64_t n = rows * row_elems;
  bool finite = true;
#pragma omp parallel for schedule(static) reduction(&& : finite) if (n >= (int64_t(1) << 16))
  for (int64_t i = 0; i < n; ++i) finite = finite && std::isfinite(values[i]);
  if (finite) return;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = values + r * row_elems;
    for (int64_t i = 0; i < row_elems; ++i) {
      if (!std::isfinite(row[i])) fail_nonfinite(dataset, first_row + r, i, row[i], fail);
    }
  }
}

void check_key_scales(std::span<const float> k_scale, const CheckFailure& fail) {
  for (size_t s = 0; s < k_scale.size(); ++s) {
    const float v = k_scale[s];
    if (!std::isfinite(v) || v <= 0.0f) fail_bad_key_scale(int64_t(s), v, fail);
  }
}

void check_positions(std::span<const int64_t> q_pos, std::span<const int64_t> k_start, int64_t keys,
                     int64_t compress_ratio, int64_t first_row, const CheckFailure& fail) {
  const int64_t c = compress_ratio;
  for (size_t i = 0; i < q_pos.size(); ++i) {
    const int64_t pos = q_pos[i], start = k_start[i], row = first_row + int64_t(i);
    if (c == 1) {
      if (pos < 0 || pos >= keys) {
        fail("q_pos", "row " + std::to_string(row) + ": position " + std::to_string(pos) + " is outside [0, L=" +
                          std::to_string(keys) + ") (k holds " + std::to_string(keys) + " keys)");
      }
      if (start < 0 || start > pos) {
        fail("k_start", "row " + std::to_string(row) + ": k_start " + std::to_string(start) + " must lie in [0, q_pos=" +
                            std::to_string(pos) + "]");
      }
      continue;
    }
    // Compressed: the query sees rows j < ⌊(t+1)/c⌋, which k must hold; k_start counts rows and may lie past the
    // last visible row (the query then sees none).
    const int64_t max_pos = (keys + 1) * c - 2;  // the last t with ⌊(t+1)/c⌋ <= L
    if (pos < 0 || pos > max_pos) {
      fail("q_pos", "row " + std::to_string(row) + ": position " + std::to_string(pos) + " is outside [0, " +
                        std::to_string(max_pos) + "] (k holds " + std::to_string(keys) + " rows of compress_ratio " +
                        std::to_string(c) + " tokens)");
    }
    const int64_t seen = (pos + 1) / c;
    if (start < 0 || start > seen) {
      fail("k_start", "row " + std::to_string(row) + ": k_start " + std::to_string(start) + " must lie in [0, " +
                          std::to_string(seen) + "] (rows visible to q_pos=" + std::to_string(pos) +
                          " with compress_ratio " + std::to_string(c) + ")");
    }
  }
}

void check_topk_ref(std::span<const int32_t> topk_ref, int64_t width, int64_t keys, int64_t first_row,
                    const CheckFailure& fail) {
  for (size_t i = 0; i < topk_ref.size(); ++i) {
    const int32_t v = topk_ref[i];
    if (v < -1 || v >= keys) {
      fail("topk_ref", "row " + std::to_string(first_row + int64_t(i) / width) + ": index " + std::to_string(v) +
                           " is outside [-1, L=" + std::to_string(keys) + ")");
    }
  }
}

void check_compression(std::optional<int64_t> c, std::optional<int64_t> window, const CheckFailure& fail) {
  if (c && (*c < 1 || *c > kMaxCompressRatio)) {
    fail("", "attribute 'compress_ratio' is " + std::to_string(*c) + ", expected 1 to " + std::to_string(kMaxCompressRatio));
  }
  if (window && (*window < 0 || *window > kMaxWindow)) {
    fail("", "attribute 'window' is " + std::to_string(*window) + ", expected 0 to " + std::to_string(kMaxWindow));
  }
}

void check_ref_declaration(const RefDeclaration& r, const CheckFailure& fail) {
  auto text = [&](const char* name, const std::optional<std::string>& v, std::initializer_list<const char*> allowed) {
    if (!v) return;
    std::string expected;
    for (const char* a : allowed) {
      if (*v == a) return;
      expected += std::string(expected.empty() ? "" : " or ") + "\"" + a + "\"";
    }
    fail("topk_ref", std::string("attribute '") + name + "' is \"" + *v + "\", expected " + expected);
  };
  auto size = [&](const char* name, std::optional<int64_t> v) {
    if (v && (*v < 1 || *v > kMaxSelectionSize)) {
      fail("topk_ref", std::string("attribute '") + name + "' is " + std::to_string(*v) + ", expected 1 to " +
                           std::to_string(kMaxSelectionSize));
    }
  };
  text("method", r.method, {"flat", "hisa", "block-sparse"});
  size("block_size", r.block_size);
  size("blocks", r.blocks);
  text("forced", r.forced, {"in-budget", "extra"});
  text("pool_precision", r.pool_precision, {"fp32", "fp8"});
}

void check_needle(std::optional<int64_t> begin, std::optional<int64_t> end, const CheckFailure& fail) {
  if (begin.has_value() != end.has_value()) {
    fail("", "has only one of 'needle_begin' and 'needle_end'; the needle range needs both");
  }
  if (begin && (*begin < 0 || *end < *begin)) {
    fail("", "needle range [" + std::to_string(*begin) + ", " + std::to_string(*end) + ") is not a valid half-open range");
  }
}

void set_compression(QueryBatch& batch, int64_t compress_ratio) {
  if (compress_ratio == 1) return;
  batch.compress_ratio = compress_ratio;
  batch.token_pos = batch.q_pos;
  for (auto& p : batch.q_pos) p = last_visible_row(p, compress_ratio);
}

}  // namespace hisa
