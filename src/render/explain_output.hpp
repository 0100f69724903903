#pragma once
// How `hisa explain` is written: the terminal page (sets, a picture of the row, every miss with its cause) and
// the JSON of everything.
#include <nlohmann/json.hpp>
#include <ostream>

#include "pipelines/explain.hpp"

namespace hisa {

void write_explanation(std::ostream& out, const Explanation& e, int64_t max_misses = 40, int width = 100);
nlohmann::json explanation_json(const Explanation& e);

}  // namespace hisa
