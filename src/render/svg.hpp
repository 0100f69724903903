#pragma once
// Small SVG charts as plain strings, for the self-contained HTML report: no scripts, no external
// resources, every piece of text escaped.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hisa::svg {

// Escapes & < > " ' so text can go into element content and attribute values alike.
std::string escape(std::string_view text);

// A number as the charts print it: up to `digits` significant digits, no trailing zeros.
std::string format_number(double v, int digits = 3);

// The outer box of a chart; the plot area is what is left inside fixed margins for axes and titles.
struct Frame {
  int width = 360, height = 220;
  std::string title, x_label, y_label;
};

struct Marker {  // a vertical rule across the plot at x, labelled at the top
  double x = 0;
  std::string label;
};

// Counts of `values` in `bins` equal bins over [lo, hi] (the last bin closed), as bars; `outline` (optional)
// is a second set of values drawn as a step line over the same bins, for comparison.
struct HistogramSpec {
  Frame frame;
  double lo = 0, hi = 1;
  int bins = 20;
  std::string color = "#3b6fb6", label;
  std::string outline_color = "#d9822b", outline_label;
  std::vector<Marker> markers;
};
std::vector<int64_t> bin_counts(std::span<const double> values, double lo, double hi, int bins);
std::string histogram(std::span<const double> values, std::span<const double> outline, const HistogramSpec& spec);

struct Series {
  std::string label, color;
  std::vector<double> x, y;
  bool dashed = false;
};
struct LineChartSpec {
  Frame frame;
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;
  bool log2_x = false;  // x axis in powers of two (x must be > 0)
  std::vector<Marker> markers;
};
std::string line_chart(const std::vector<Series>& series, const LineChartSpec& spec);

// Grouped vertical bars: one group per category, one bar per series inside it.
struct BarChartSpec {
  Frame frame;
  std::vector<std::string> series_labels, colors;
  double y_min = 0, y_max = 1;
};
struct BarGroup {
  std::string label;
  std::vector<double> values;  // one per series
};
std::string bar_chart(const std::vector<BarGroup>& groups, const BarChartSpec& spec);

// Horizontal bars split into parts, each row scaled to its own total (shares), the total printed at the end.
struct StackedRow {
  std::string label;
  std::vector<double> parts;
};
std::string stacked_share_bars(const std::vector<StackedRow>& rows, const std::vector<std::string>& part_labels,
                               const std::vector<std::string>& colors, int width = 720);

// One query's row: the column maxima of its scores as a filled profile (a maximum, so an isolated high
// token stays visible at any width), shaded position ranges behind it, and rows of ticks under it.
struct TickRow {
  std::string label, color;
  std::vector<int64_t> positions;
};
struct ScoreStripSpec {
  int width = 760, height = 120;
  int64_t first = 0, last = 0;        // positions covered, inclusive
  std::vector<float> column_max;      // scores max-pooled to one value per column over [first, last]
  std::vector<std::pair<int64_t, int64_t>> shaded;  // inclusive position ranges (HISA's kept blocks)
  std::string shaded_label;
  std::vector<TickRow> ticks;
};
std::string score_strip(const ScoreStripSpec& spec);

// Max-pools values[i] (position first + i) into `columns` columns covering the range evenly.
std::vector<float> max_pool(std::span<const float> values, int columns);

}  // namespace hisa::svg
