#include "select/config.hpp"

#include "core/error.hpp"

namespace hisa {

void SelectionConfig::validate() const {
  if (topk < 1) throw OptionError("topk", "{topk} must be at least 1 (got " + std::to_string(topk) + ")");
  if (block_size < 1) throw OptionError("block_size", "{block_size} must be at least 1 (got " + std::to_string(block_size) + ")");
  if (blocks < 1) throw OptionError("blocks", "{blocks} must be at least 1 (got " + std::to_string(blocks) + ")");
}

std::string_view method_name(Method m) {
  switch (m) {
    case Method::Flat: return "flat";
    case Method::Hisa: return "hisa";
    case Method::Block: return "block";
  }
  return "?";
}

std::string_view forced_mode_name(ForcedMode f) { return f == ForcedMode::InBudget ? "in-budget" : "extra"; }
std::string_view pool_precision_name(PoolPrecision p) { return p == PoolPrecision::Fp32 ? "fp32" : "fp8"; }

std::optional<Method> parse_method(std::string_view s) {
  if (s == "flat" || s == "dsa") return Method::Flat;
  if (s == "hisa") return Method::Hisa;
  if (s == "block" || s == "block-sparse") return Method::Block;
  return std::nullopt;
}

std::optional<ForcedMode> parse_forced_mode(std::string_view s) {
  if (s == "in-budget") return ForcedMode::InBudget;
  if (s == "extra") return ForcedMode::Extra;
  return std::nullopt;
}

std::optional<PoolPrecision> parse_pool_precision(std::string_view s) {
  if (s == "fp32") return PoolPrecision::Fp32;
  if (s == "fp8") return PoolPrecision::Fp8;
  return std::nullopt;
}

}  // namespace hisa
