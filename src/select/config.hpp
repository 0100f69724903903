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

struct SelectionConfig {
  int64_t topk = 2048;
  int64_t block_size = 128;
  int64_t blocks = 64;  // m
  ForcedMode forced = ForcedMode::InBudget;
  PoolPrecision pool = PoolPrecision::Fp32;

  // The block-sparse baseline keeps m = ceil(k / B) blocks, in-budget.
  int64_t block_sparse_blocks() const { return (topk + block_size - 1) / block_size; }
  void validate() const;  // OptionError on values that define no selection
};

std::string_view method_name(Method m);
std::string_view forced_mode_name(ForcedMode f);
std::string_view pool_precision_name(PoolPrecision p);
std::optional<Method> parse_method(std::string_view s);
std::optional<ForcedMode> parse_forced_mode(std::string_view s);
std::optional<PoolPrecision> parse_pool_precision(std::string_view s);

}  // namespace hisa
