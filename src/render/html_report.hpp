#pragma once
// `hisa report`'s page: one self-contained HTML file, inline CSS and inline SVG, no scripts, nothing fetched.
#include <ostream>
#include <string>
#include <vector>

#include "pipelines/report.hpp"

namespace hisa {

void write_html_report(std::ostream& out, const ReportData& data);

// The section headings, in page order (the tests look for them).
const std::vector<std::string>& report_headings();

}  // namespace hisa
