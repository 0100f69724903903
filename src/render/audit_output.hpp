#pragma once
// How audit results are written: a table for people, JSON for programs, tidy CSV for pandas.
#include <nlohmann/json.hpp>
#include <ostream>

#include "pipelines/audit.hpp"

namespace hisa {

void write_audit_table(std::ostream& out, const AuditResult& r);
nlohmann::json audit_json(const AuditResult& r);
void write_layer_csv(std::ostream& out, const AuditResult& r);

// Per-query CSV, streamed: header first, then one row per query as the audit finishes it.
void write_query_csv_header(std::ostream& out);
void write_query_csv_row(std::ostream& out, const QueryRecord& q);

}  // namespace hisa
