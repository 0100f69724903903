#pragma once
// The value checks of datasets/FORMAT.md ("What the loader checks") on decoded tensors, shared by the dump reader
// and the Python module (import hisa), so a bad value gets the same message from a file and from an array. Each
// failure calls fail(dataset, message), which must throw.
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "io/dump_model.hpp"

namespace hisa {

using CheckFailure = std::function<void(const std::string& dataset, const std::string& message)>;

// NaN or ±inf among rows × row_elems values: "row R holds V at element E ..." (R counted from first_row).
void check_finite(const std::string& dataset, const float* values, int64_t rows, int64_t row_elems, int64_t first_row,
                  const CheckFailure& fail);
// k_scale: finite and > 0.
void check_key_scales(std::span<const float> k_scale, const CheckFailure& fail);
// The two checks' failures, for values checked elsewhere (on a GPU: cuda/device_layer.hpp).
[[noreturn]] void fail_nonfinite(const std::string& dataset, int64_t row, int64_t element, float value,
                                 const CheckFailure& fail);
[[noreturn]] void fail_bad_key_scale(int64_t row, float value, const CheckFailure& fail);
// Each query's q_pos and k_start against L keys (rows of compress_ratio tokens: q_pos a token position, k_start
// a row). Rows counted from first_row.
void check_positions(std::span<const int64_t> q_pos, std::span<const int64_t> k_start, int64_t keys,
                     int64_t compress_ratio, int64_t first_row, const CheckFailure& fail);
// topk_ref entries (rows × width, -1 padded) against L keys: each in [-1, L). Rows counted from first_row.
void check_topk_ref(std::span<const int32_t> topk_ref, int64_t width, int64_t keys, int64_t first_row,
                    const CheckFailure& fail);
// A layer's compress_ratio (1 … 2^20) and window (0 … 2^40): bounds that keep c·L and token positions far from
// int64 overflow. Failures name dataset "" (the layer group).
inline constexpr int64_t kMaxCompressRatio = int64_t(1) << 20, kMaxWindow = int64_t(1) << 40;
void check_compression(std::optional<int64_t> compress_ratio, std::optional<int64_t> window, const CheckFailure& fail);
// topk_ref's declared rule (datasets/FORMAT.md, "Declaring what topk_ref is"): method, forced and pool_precision
// among the format's words, block_size and blocks 1 … 2^24. Failures name dataset "topk_ref".
void check_ref_declaration(const RefDeclaration& r, const CheckFailure& fail);
// A needle's half-open token range: both ends or none, 0 <= begin <= end. Failures name dataset "".
void check_needle(std::optional<int64_t> begin, std::optional<int64_t> end, const CheckFailure& fail);
// Puts a checked batch of a compressed layer (compress_ratio > 1) into the form engines take: token positions
// to token_pos, q_pos the last visible row (QueryBatch).
void set_compression(QueryBatch& batch, int64_t compress_ratio);

}  // namespace hisa
