#pragma once
// The options that define a selection (docs/definitions.md): top-k, HISA's block size and budget,
// forced-block mode and pooled-key precision.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hisa {

// The methods an engine selects with. (Flat DSA's selection can also be searched for by branch and bound,
// select/certified.hpp: the same method found another way.)
enum class Method { Flat, Hisa, Block };
enum class ForcedMode { InBudget, Extra };  // official code (forced blocks use budget) / paper's Algorithm 1
enum class PoolPrecision { Fp32, Fp8 };     // mean in fp32, optionally re-quantised to e4m3 per block

// The largest k, B and m a selection may use: 2^24 = 16,777,216, beyond any model's context, so that sizes and
// their products (m·B, k + B) stay far from overflow and no buffer is sized by an absurd k.
inline constexpr int64_t kMaxSelectionSize = int64_t(1) << 24;

struct SelectionConfig {
  int64_t topk = 2048;
  int64_t block_size = 128;
  int64_t blocks = 64;  // m
  ForcedMode forced = ForcedMode::InBudget;
  PoolPrecision pool = PoolPrecision::Fp32;

  // The block-sparse baseline keeps m = ceil(k / B) blocks, in-budget.
  int64_t block_sparse_blocks() const { return (topk + block_size - 1) / block_size; }
  void validate() const;  // OptionError on values that define no selection, or exceed kMaxSelectionSize
};

// OptionError for `option` unless 1 <= value <= kMaxSelectionSize (k, B, m, and the sweep's lists of them).
void check_selection_size(const std::string& option, int64_t value);

std::string_view method_name(Method m);
std::string_view forced_mode_name(ForcedMode f);
std::string_view pool_precision_name(PoolPrecision p);
std::optional<Method> parse_method(std::string_view s);
std::optional<ForcedMode> parse_forced_mode(std::string_view s);
std::optional<PoolPrecision> parse_pool_precision(std::string_view s);

}  // namespace hisa
