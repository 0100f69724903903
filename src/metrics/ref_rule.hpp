#pragma once
// The rule a layer's topk_ref is judged by (docs/definitions.md, "Judging topk_ref"): what the dataset declares
// (io/dump_model.hpp, RefDeclaration), with the audit's --ref-* options over it, and the audit's own settings
// for whatever neither says.
#include <cstdint>
#include <optional>
#include <string>

#include "io/dump_model.hpp"
#include "select/config.hpp"

namespace hisa {

// The default --ref-tolerance: 2^-10, as for the fp8 tensor cores (metrics/parity.hpp).
inline constexpr double kDefaultRefTolerance = 1.0 / 1024;

struct RefOverrides {
  std::optional<Method> method;
  std::optional<int64_t> block_size, blocks;
  std::optional<ForcedMode> forced;
  std::optional<PoolPrecision> pool;
  double tolerance = kDefaultRefTolerance;
};

struct RefRule {
  Method method = Method::Flat;
  // topk: the audit's k. For hisa and block-sparse: B, m (block-sparse default ceil(k/B)), the forced-block
  // mode and the pooling precision.
  SelectionConfig config;
  bool operator==(const RefRule& o) const;
};

// OptionError for an override outside the format's values is the CLI's; here every input is already checked.
RefRule resolve_ref_rule(const RefDeclaration& declared, const RefOverrides& overrides, const SelectionConfig& run);

// "flat", "hisa" or "block-sparse": the names of the format and of --ref-method.
std::string ref_method_name(Method m);
// "flat", or e.g. "hisa B=128 m=64 in-budget fp32".
std::string describe_ref_rule(const RefRule& rule);

// Whether an audit with the run's config holds the rule's exact selection and block scores J: flat always;
// hisa when B, m, the forced mode and the pooling are the run's; block-sparse when B and the pooling are.
bool audit_covers(const RefRule& rule, const SelectionConfig& run);

}  // namespace hisa
