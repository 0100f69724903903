#include "select/config.hpp"

#include "core/error.hpp"

namespace hisa {

void check_selection_size(const std::string& option, int64_t value) {
  if (value < 1) throw OptionError(option, "{" + option + "} must be at least 1 (got " + std::to_string(value) + ")");
  if (value > kMaxSelectionSize) {
    throw OptionError(option, "{" + option + "} must be at most " + std::to_string(kMaxSelectionSize) +
                                  " (2^24, beyond any model's context) (got " + std::to_string(value) + ")");
  }
}

void SelectionConfig::validate() const {
  check_selection_size("topk", topk);
  check_selection_size("block_size", block_size);
  check_selection_size("blocks", blocks);
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
