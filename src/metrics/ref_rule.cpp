#include "metrics/ref_rule.hpp"

namespace hisa {

bool RefRule::operator==(const RefRule& o) const {
  const SelectionConfig &a = config, &b = o.config;
  return method == o.method && a.topk == b.topk && a.block_size == b.block_size && a.blocks == b.blocks &&
         a.forced == b.forced && a.pool == b.pool;
}

RefRule resolve_ref_rule(const RefDeclaration& declared, const RefOverrides& over, const SelectionConfig& run) {
  RefRule r;
  r.config = run;
  std::optional<Method> declared_method;
  if (declared.method) declared_method = parse_method(*declared.method);
  r.method = over.method.value_or(declared_method.value_or(Method::Flat));
  if (r.method == Method::Flat) return r;
  r.config.block_size = over.block_size.value_or(declared.block_size.value_or(run.block_size));
  const int64_t default_blocks = r.method == Method::Block ? r.config.block_sparse_blocks() : run.blocks;
  r.config.blocks = over.blocks.value_or(declared.blocks.value_or(default_blocks));
  std::optional<ForcedMode> declared_forced;
  if (declared.forced) declared_forced = parse_forced_mode(*declared.forced);
  r.config.forced = over.forced.value_or(declared_forced.value_or(r.method == Method::Block ? ForcedMode::InBudget : run.forced));
  std::optional<PoolPrecision> declared_pool;
  if (declared.pool_precision) declared_pool = parse_pool_precision(*declared.pool_precision);
  r.config.pool = over.pool.value_or(declared_pool.value_or(run.pool));
  return r;
}

std::string ref_method_name(Method m) {
  return m == Method::Block ? "block-sparse" : std::string(method_name(m));  // the format's name for it
}

std::string describe_ref_rule(const RefRule& r) {
  std::string s = ref_method_name(r.method);
  if (r.method == Method::Flat) return s;
  return s + " B=" + std::to_string(r.config.block_size) + " m=" + std::to_string(r.config.blocks) + " " +
         std::string(forced_mode_name(r.config.forced)) + " " + std::string(pool_precision_name(r.config.pool));
}

bool audit_covers(const RefRule& rule, const SelectionConfig& run) {
  const SelectionConfig& c = rule.config;
  switch (rule.method) {
    case Method::Flat: return true;
    case Method::Hisa:
      return c.block_size == run.block_size && c.blocks == run.blocks && c.forced == run.forced && c.pool == run.pool;
    case Method::Block: return c.block_size == run.block_size && c.pool == run.pool;
  }
  return false;
}

}  // namespace hisa
