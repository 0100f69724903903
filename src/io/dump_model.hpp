#pragma once
// In-memory description of a v1 dump (datasets/FORMAT.md) and the decoded tensors the loader hands out.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/numeric.hpp"

namespace hisa {

inline constexpr const char* kFormatName = "hisa-dump";
inline constexpr int kFormatVersion = 1;

struct FileAttributes {
  std::string model;
  int64_t n_heads = 0;
  int64_t head_dim = 0;
  int64_t index_topk = 0;
  std::optional<int64_t> hadamard;      // 0/1
  std::optional<std::string> rope;      // "half-split" | "interleaved"
  std::optional<std::string> scale_fmt;  // "ue8m0" | "fp32"
  std::optional<std::string> source;
};

struct SampleAttributes {
  int64_t seq_len = 0;
  std::optional<std::string> task;
  std::optional<int64_t> context_length;
  std::optional<double> depth_percent;
  std::optional<int64_t> needle_begin;  // half-open token range of the needle
  std::optional<int64_t> needle_end;
  std::optional<std::string> length_bucket;
  bool has_needle() const { return needle_begin && needle_end && *needle_end > *needle_begin; }
};

// What a layer's topk_ref declares itself to be: the attributes of the topk_ref dataset (datasets/FORMAT.md,
// "Declaring what topk_ref is"), checked by the reader; an absent attribute is empty.
struct RefDeclaration {
  std::optional<std::string> method;  // "flat", "hisa" or "block-sparse"
  std::optional<int64_t> block_size, blocks;
  std::optional<std::string> forced;          // "in-budget" or "extra"
  std::optional<std::string> pool_precision;  // "fp32" or "fp8"
  bool operator==(const RefDeclaration&) const = default;
};

// How a layer's keys relate to tokens: its compress_ratio and window attributes (datasets/FORMAT.md).
struct KeyCompression {
  int64_t compress_ratio = 1;
  std::optional<int64_t> window;
  bool operator==(const KeyCompression&) const = default;
};

// Shapes and storage of one layer group, known without reading any data.
struct LayerShape {
  int layer = 0;
  int64_t keys = 0;     // L
  int64_t queries = 0;  // Nq
  int64_t heads = 0;    // H
  int64_t dim = 0;      // D
  ElementType q_type = ElementType::F32;
  ElementType k_type = ElementType::F32;
  bool has_k_start = false;
  bool has_k_scale = false;
  int64_t ref_width = 0;  // columns of topk_ref, 0 when absent
  RefDeclaration ref_declaration;
  // Compressed keys (DeepSeek-V4): row j of k summarises tokens [j·c, (j+1)·c) (layer attribute compress_ratio, 1
  // when absent), and the tokens always attended besides the selection (attribute window; context only).
  int64_t compress_ratio = 1;
  std::optional<int64_t> window;
};

// The last key row a query at token position t may see: t itself on an uncompressed layer, else ⌊(t+1)/c⌋ − 1
// (row j is visible once its last token, (j+1)·c − 1, is). Less than k_start when the query sees no row.
inline int64_t last_visible_row(int64_t token_pos, int64_t compress_ratio) {
  return compress_ratio == 1 ? token_pos : (token_pos + 1) / compress_ratio - 1;
}

// Decoded keys of one layer: k[s*D + d] in float, exactly the stored values; k_scale[s] (1 when absent).
struct LayerKeys {
  int64_t count = 0;
  int64_t dim = 0;
  int64_t compress_ratio = 1;  // tokens per row (LayerShape::compress_ratio)
  std::vector<float> k;
  std::vector<float> k_scale;
  // device >= 0: the values live on that CUDA device instead (import hisa on CUDA tensors), float32 in k's and
  // k_scale's layouts, read in place by a CUDA engine on that device only; k and k_scale are then empty.
  int device = -1;
  const float* device_k = nullptr;
  const float* device_k_scale = nullptr;
  bool on_device() const { return device >= 0; }
  const float* row(int64_t s) const { return k.data() + s * dim; }
};

// A contiguous range of queries of one layer, decoded: q[(i*H + h)*D + d], w[i*H + h].
struct QueryBatch {
  int64_t first = 0;  // index of the first query in the layer
  int64_t count = 0;
  int64_t heads = 0;
  int64_t dim = 0;
  std::vector<float> q;
  std::vector<float> w;
  // device >= 0: q and w live on that CUDA device instead, as LayerKeys' device values (q and w empty).
  int device = -1;
  const float* device_q = nullptr;
  const float* device_w = nullptr;
  bool on_device() const { return device >= 0; }
  // Optional, host batches only: q's values as bf16 codes, [count, heads, dim], owned by the caller and valid
  // for the engine call, when the caller has them (a bf16 source). They must be exactly q's values: the CUDA
  // engine uploads them instead of encoding q (half the bytes to read, and none at all from pinned memory).
  // Copying the batch copies the pointer; batch_rows and the other row subsets leave it out.
  const uint16_t* q_bf16 = nullptr;
  // The last key row each query may see (last_visible_row): what every engine and metric works with. On an
  // uncompressed layer it is the stored q_pos; on a compressed one the stored token positions are in token_pos.
  std::vector<int64_t> q_pos;
  std::vector<int64_t> k_start;   // always filled (0 when the dump has none)
  int64_t compress_ratio = 1;
  std::vector<int64_t> token_pos;  // the stored q_pos when compress_ratio > 1, else empty
  std::vector<int32_t> topk_ref;  // count * ref_width, empty when absent
  int64_t ref_width = 0;
  RefDeclaration ref_declaration;  // the layer's, with topk_ref
  const float* q_row(int64_t i, int64_t h) const { return q.data() + (i * heads + h) * dim; }
  const float* w_row(int64_t i) const { return w.data() + i * heads; }
  // The query's token position, as stored in the dump.
  int64_t token_position(int64_t i) const { return token_pos.empty() ? q_pos[size_t(i)] : token_pos[size_t(i)]; }
  // Whether the query may see at least one key row (a query of a compressed layer before its first whole row sees
  // none, and its selection is empty).
  bool sees_rows(int64_t i) const { return q_pos[size_t(i)] >= k_start[size_t(i)]; }
};

}  // namespace hisa
