#include "render/svg.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace hisa::svg {

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += ch;
    }
  }
  return out;
}

std::string format_number(double v, int digits) {
  if (!std::isfinite(v)) return v > 0 ? "inf" : v < 0 ? "-inf" : "nan";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

namespace {

// Coordinates are written with one decimal: finer than a pixel, and short.
std::string px(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

constexpr double kLeft = 46, kRight = 14, kTop = 40, kBottom = 36;  // the title and legend lines sit above kTop

// Maps data to pixels inside a frame's plot area.
struct Plot {
  double x0, x1, y0, y1;  // pixel box: x0 left, y0 top
  double lo_x, hi_x, lo_y, hi_y;
  bool log2_x = false;
  double fx(double x) const {
    if (log2_x) {
      const double a = std::log2(lo_x), b = std::log2(hi_x);
      return b > a ? x0 + (std::log2(x) - a) / (b - a) * (x1 - x0) : x0;
    }
    return hi_x > lo_x ? x0 + (x - lo_x) / (hi_x - lo_x) * (x1 - x0) : x0;
  }
  double fy(double y) const { return hi_y > lo_y ? y1 - (y - lo_y) / (hi_y - lo_y) * (y1 - y0) : y1; }
};

Plot plot_of(const Frame& f, double lo_x, double hi_x, double lo_y, double hi_y, bool log2_x = false) {
  return {kLeft, f.width - kRight, kTop, f.height - kBottom, lo_x, hi_x, lo_y, hi_y, log2_x};
}

// Inline SVG in HTML needs no namespace attribute; leaving it out keeps the page free of any URL.
void open_svg(std::ostringstream& s, int width, int height, const std::string& title) {
  s << "<svg class=\"chart\" width=\"" << width << "\" height=\"" << height << "\" viewBox=\"0 0 " << width << " "
    << height << "\" role=\"img\"><title>" << escape(title) << "</title>";
}

void text(std::ostringstream& s, double x, double y, const std::string& t, const char* anchor = "start",
          const char* extra = "") {
  s << "<text x=\"" << px(x) << "\" y=\"" << px(y) << "\" text-anchor=\"" << anchor << "\"" << extra << ">"
    << escape(t) << "</text>";
}

void line(std::ostringstream& s, double x1, double y1, double x2, double y2, const std::string& stroke,
          const char* extra = "") {
  s << "<line x1=\"" << px(x1) << "\" y1=\"" << px(y1) << "\" x2=\"" << px(x2) << "\" y2=\"" << px(y2)
    << "\" stroke=\"" << escape(stroke) << "\"" << extra << "/>";
}

void rect(std::ostringstream& s, double x, double y, double w, double h, const std::string& fill, const char* extra = "") {
  s << "<rect x=\"" << px(x) << "\" y=\"" << px(y) << "\" width=\"" << px(std::max(0.0, w)) << "\" height=\""
    << px(std::max(0.0, h)) << "\" fill=\"" << escape(fill) << "\"" << extra << "/>";
}

// About `count` round ticks (1, 2 or 5 times a power of ten apart) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int count = 4) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / count, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) ticks.push_back(std::fabs(t) < step * 1e-9 ? 0 : t);
  return ticks;
}

// Powers of two in [lo, hi], thinned to at most 9.
std::vector<double> log2_ticks(double lo, double hi) {
  std::vector<double> ticks;
  for (int e = int(std::ceil(std::log2(lo) - 1e-9)); e <= int(std::floor(std::log2(hi) + 1e-9)); ++e) ticks.push_back(std::ldexp(1.0, e));
  const size_t stride = (ticks.size() + 8) / 9;
  std::vector<double> thinned;
  for (size_t i = 0; i < ticks.size(); i += std::max<size_t>(1, stride)) thinned.push_back(ticks[i]);
  return thinned;
}

// Title, grid, ticks and axis labels of a frame.
void axes(std::ostringstream& s, const Frame& f, const Plot& p, const std::vector<double>& x_ticks,
          const std::vector<double>& y_ticks) {
  text(s, 4, 14, f.title, "start", " class=\"title\"");
  for (double t : y_ticks) {
    line(s, p.x0, p.fy(t), p.x1, p.fy(t), "#e3e3e3");
    text(s, p.x0 - 4, p.fy(t) + 4, format_number(t), "end");
  }
  for (double t : x_ticks) {
    line(s, p.fx(t), p.y1, p.fx(t), p.y1 + 4, "#888");
    text(s, p.fx(t), p.y1 + 15, format_number(t, 4), "middle");
  }
  line(s, p.x0, p.y1, p.x1, p.y1, "#888");
  line(s, p.x0, p.y0, p.x0, p.y1, "#888");
  if (!f.x_label.empty()) text(s, (p.x0 + p.x1) / 2, f.height - 4, f.x_label, "middle", " class=\"axis\"");
  if (!f.y_label.empty()) {
    s << "<text class=\"axis\" text-anchor=\"middle\" transform=\"translate(11," << px((p.y0 + p.y1) / 2)
      << ") rotate(-90)\">" << escape(f.y_label) << "</text>";
  }
}

// A legend line under the title, right-aligned: a swatch and a label per entry, centred on height y.
void legend(std::ostringstream& s, double right, double y, const std::vector<std::pair<std::string, std::string>>& entries,
            const std::vector<bool>& dashed = {}) {
  double x = right;
  for (size_t i = entries.size(); i-- > 0;) {
    const auto& [label, color] = entries[i];
    if (label.empty()) continue;
    x -= 6.2 * double(label.size()) + 4;
    text(s, x, y + 4, label, "start", " class=\"legend\"");
    x -= 18;
    const bool dash = i < dashed.size() && dashed[i];
    line(s, x, y, x + 14, y, color, dash ? " stroke-width=\"2\" stroke-dasharray=\"4 2\"" : " stroke-width=\"3\"");
    x -= 8;
  }
}

void markers(std::ostringstream& s, const Plot& p, const std::vector<Marker>& ms) {
  for (const auto& m : ms) {
    const double x = p.fx(m.x);
    if (!(x >= p.x0 - 0.5 && x <= p.x1 + 0.5)) continue;
    line(s, x, p.y0, x, p.y1, "#777", " stroke-dasharray=\"3 3\"");
    text(s, x + 3, p.y0 + 10, m.label, "start", " class=\"marker\"");
  }
}

}  // namespace

std::vector<int64_t> bin_counts(std::span<const double> values, double lo, double hi, int bins) {
  std::vector<int64_t> counts(size_t(std::max(1, bins)), 0);
  for (double v : values) {
    if (!(v >= lo && v <= hi)) continue;
    const int b = hi > lo ? int((v - lo) / (hi - lo) * bins) : 0;
    ++counts[size_t(std::clamp(b, 0, int(counts.size()) - 1))];  // v = hi falls in the last bin
  }
  return counts;
}

std::string histogram(std::span<const double> values, std::span<const double> outline, const HistogramSpec& spec) {
  const auto counts = bin_counts(values, spec.lo, spec.hi, spec.bins);
  const auto outline_counts = bin_counts(outline, spec.lo, spec.hi, spec.bins);
  int64_t top = 1;
  for (int64_t c : counts) top = std::max(top, c);
  if (!outline.empty()) {
    for (int64_t c : outline_counts) top = std::max(top, c);
  }
  const auto y_ticks = nice_ticks(0, double(top));
  const double y_max = std::max(double(top), y_ticks.back());
  const Plot p = plot_of(spec.frame, spec.lo, spec.hi, 0, y_max);
  std::ostringstream s;
  open_svg(s, spec.frame.width, spec.frame.height, spec.frame.title);
  axes(s, spec.frame, p, nice_ticks(spec.lo, spec.hi), y_ticks);
  const double bin_width = (spec.hi - spec.lo) / double(counts.size());
  for (size_t b = 0; b < counts.size(); ++b) {
    if (counts[b] == 0) continue;
    const double xa = p.fx(spec.lo + double(b) * bin_width), xb = p.fx(spec.lo + double(b + 1) * bin_width);
    s << "<rect x=\"" << px(xa + 0.5) << "\" y=\"" << px(p.fy(double(counts[b]))) << "\" width=\""
      << px(std::max(0.5, xb - xa - 1)) << "\" height=\"" << px(p.y1 - p.fy(double(counts[b]))) << "\" fill=\""
      << escape(spec.color) << "\"><title>" << escape(format_number(spec.lo + double(b) * bin_width) + "–" +
                                                      format_number(spec.lo + double(b + 1) * bin_width) + ": " +
                                                      std::to_string(counts[b])) << "</title></rect>";
  }
  if (!outline.empty()) {
    std::string points;
    for (size_t b = 0; b < outline_counts.size(); ++b) {
      const double y = p.fy(double(outline_counts[b]));
      points += px(p.fx(spec.lo + double(b) * bin_width)) + "," + px(y) + " " +
                px(p.fx(spec.lo + double(b + 1) * bin_width)) + "," + px(y) + " ";
    }
    s << "<polyline fill=\"none\" stroke=\"" << escape(spec.outline_color) << "\" stroke-width=\"1.5\" points=\""
      << points << "\"/>";
  }
  markers(s, p, spec.markers);
  legend(s, spec.frame.width - kRight, 26, {{spec.label, spec.color}, {outline.empty() ? "" : spec.outline_label, spec.outline_color}});
  s << "</svg>";
  return s.str();
}

std::string line_chart(const std::vector<Series>& series, const LineChartSpec& spec) {
  const Plot p = plot_of(spec.frame, spec.x_min, spec.x_max, spec.y_min, spec.y_max, spec.log2_x);
  std::ostringstream s;
  open_svg(s, spec.frame.width, spec.frame.height, spec.frame.title);
  axes(s, spec.frame, p, spec.log2_x ? log2_ticks(spec.x_min, spec.x_max) : nice_ticks(spec.x_min, spec.x_max),
       nice_ticks(spec.y_min, spec.y_max));
  markers(s, p, spec.markers);
  std::vector<std::pair<std::string, std::string>> entries;
  std::vector<bool> dashed;
  for (const auto& ser : series) {
    std::string points;
    for (size_t i = 0; i < std::min(ser.x.size(), ser.y.size()); ++i) {
      if (!std::isfinite(ser.y[i]) || (spec.log2_x && !(ser.x[i] > 0))) continue;
      points += px(p.fx(ser.x[i])) + "," + px(p.fy(std::clamp(ser.y[i], spec.y_min, spec.y_max))) + " ";
    }
    s << "<polyline fill=\"none\" stroke=\"" << escape(ser.color) << "\" stroke-width=\"2\""
      << (ser.dashed ? " stroke-dasharray=\"5 3\"" : "") << " points=\"" << points << "\"/>";
    entries.push_back({ser.label, ser.color});
    dashed.push_back(ser.dashed);
  }
  legend(s, spec.frame.width - kRight, 26, entries, dashed);
  s << "</svg>";
  return s.str();
}

std::string bar_chart(const std::vector<BarGroup>& groups, const BarChartSpec& spec) {
  const Plot p = plot_of(spec.frame, 0, double(std::max<size_t>(1, groups.size())), spec.y_min, spec.y_max);
  std::ostringstream s;
  open_svg(s, spec.frame.width, spec.frame.height, spec.frame.title);
  axes(s, spec.frame, p, {}, nice_ticks(spec.y_min, spec.y_max));
  const size_t per_group = spec.series_labels.size();
  const double slot = (p.x1 - p.x0) / double(std::max<size_t>(1, groups.size()));
  const double bar = slot * 0.8 / double(std::max<size_t>(1, per_group));
  const size_t label_every = size_t(std::ceil(28.0 / slot));  // labels at least ~28 px apart
  for (size_t g = 0; g < groups.size(); ++g) {
    const double x = p.x0 + double(g) * slot + slot * 0.1;
    for (size_t k = 0; k < std::min(per_group, groups[g].values.size()); ++k) {
      const double v = std::clamp(groups[g].values[k], spec.y_min, spec.y_max);
      s << "<rect x=\"" << px(x + double(k) * bar) << "\" y=\"" << px(p.fy(v)) << "\" width=\"" << px(std::max(0.5, bar - 0.5))
        << "\" height=\"" << px(p.y1 - p.fy(v)) << "\" fill=\"" << escape(k < spec.colors.size() ? spec.colors[k] : "#888")
        << "\"><title>" << escape(groups[g].label + " " + spec.series_labels[k] + ": " + format_number(groups[g].values[k], 4))
        << "</title></rect>";
    }
    if (g % label_every == 0) text(s, p.x0 + (double(g) + 0.5) * slot, p.y1 + 15, groups[g].label, "middle");
  }
  std::vector<std::pair<std::string, std::string>> entries;
  for (size_t k = 0; k < per_group; ++k) entries.push_back({spec.series_labels[k], k < spec.colors.size() ? spec.colors[k] : "#888"});
  legend(s, spec.frame.width - kRight, 26, entries);
  s << "</svg>";
  return s.str();
}

std::string stacked_share_bars(const std::vector<StackedRow>& rows, const std::vector<std::string>& part_labels,
                               const std::vector<std::string>& colors, int width) {
  constexpr double kRow = 20, kLabel = 70, kTotal = 90, kHead = 26;
  const int height = int(kHead + kRow * double(rows.size()) + 6);
  std::ostringstream s;
  open_svg(s, width, height, "share of misses by cause per layer");
  std::vector<std::pair<std::string, std::string>> entries;
  for (size_t k = 0; k < part_labels.size(); ++k) entries.push_back({part_labels[k], colors[k % colors.size()]});
  legend(s, width - 4, 10, entries);
  const double x0 = kLabel, x1 = width - kTotal;
  for (size_t r = 0; r < rows.size(); ++r) {
    const double y = kHead + kRow * double(r);
    double total = 0;
    for (double v : rows[r].parts) total += v;
    text(s, x0 - 6, y + 14, rows[r].label, "end");
    if (total <= 0) {
      rect(s, x0, y + 3, x1 - x0, kRow - 6, "#f2f2f2");
      text(s, x0 + 6, y + 14, "no misses", "start", " class=\"legend\"");
    } else {
      double x = x0;
      for (size_t k = 0; k < rows[r].parts.size(); ++k) {
        const double w = (x1 - x0) * rows[r].parts[k] / total;
        if (w <= 0) continue;
        s << "<rect x=\"" << px(x) << "\" y=\"" << px(y + 3) << "\" width=\"" << px(w) << "\" height=\"" << px(kRow - 6)
          << "\" fill=\"" << escape(colors[k % colors.size()]) << "\"><title>"
          << escape(rows[r].label + " " + (k < part_labels.size() ? part_labels[k] : "") + ": " +
                    format_number(rows[r].parts[k], 10) + " (" + format_number(100 * rows[r].parts[k] / total) + " %)")
          << "</title></rect>";
        x += w;
      }
    }
    text(s, x1 + 6, y + 14, format_number(total, 10) + " misses");
  }
  s << "</svg>";
  return s.str();
}

std::vector<float> max_pool(std::span<const float> values, int columns) {
  const int64_t n = int64_t(values.size());
  if (n == 0 || columns <= 0) return {};
  std::vector<float> out(size_t(std::min<int64_t>(columns, n)), -INFINITY);
  for (int64_t i = 0; i < n; ++i) {
    float& slot = out[size_t(i * int64_t(out.size()) / n)];
    slot = std::max(slot, values[size_t(i)]);
  }
  return out;
}

std::string score_strip(const ScoreStripSpec& spec) {
  constexpr double kLabel = 90, kRightPad = 10, kTick = 12, kAxis = 16;
  const double x0 = kLabel, x1 = spec.width - kRightPad;
  const double profile_top = 18, profile_bottom = spec.height - kAxis - kTick * double(spec.ticks.size()) - 4;
  const double span = double(std::max<int64_t>(1, spec.last - spec.first + 1));
  auto fx = [&](double pos) { return x0 + (pos - double(spec.first)) / span * (x1 - x0); };
  std::ostringstream s;
  open_svg(s, spec.width, spec.height, "scores by position");
  for (const auto& [a, b] : spec.shaded) rect(s, fx(double(a)), profile_top, fx(double(b) + 1) - fx(double(a)), profile_bottom - profile_top, "#c4daf3");
  if (!spec.shaded_label.empty()) {
    rect(s, x1 - 6.2 * double(spec.shaded_label.size()) - 22, 5, 12, 9, "#c4daf3");
    text(s, x1, 13, spec.shaded_label, "end", " class=\"legend\"");
  }
  text(s, x0 - 6, (profile_top + profile_bottom) / 2 + 4, "score (max)", "end", " class=\"legend\"");
  if (!spec.column_max.empty()) {
    float lo = INFINITY, hi = -INFINITY;
    for (float v : spec.column_max) {
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    }
    const double columns = double(spec.column_max.size());
    std::string points = px(x0) + "," + px(profile_bottom) + " ";
    for (size_t c = 0; c < spec.column_max.size(); ++c) {
      const float v = std::isfinite(spec.column_max[c]) ? spec.column_max[c] : lo;
      const double y = hi > lo ? profile_bottom - double(v - lo) / double(hi - lo) * (profile_bottom - profile_top)
                               : profile_top;
      points += px(x0 + double(c) / columns * (x1 - x0)) + "," + px(y) + " " +
                px(x0 + double(c + 1) / columns * (x1 - x0)) + "," + px(y) + " ";
    }
    points += px(x1) + "," + px(profile_bottom);
    s << "<polygon fill=\"#8a8a8a\" fill-opacity=\"0.55\" stroke=\"#555\" stroke-width=\"0.6\" points=\"" << points << "\"/>";
  }
  line(s, x0, profile_bottom, x1, profile_bottom, "#888");
  for (size_t r = 0; r < spec.ticks.size(); ++r) {
    const double y = profile_bottom + 4 + kTick * double(r);
    text(s, x0 - 6, y + 9, spec.ticks[r].label, "end", " class=\"legend\"");
    // Ticks at least one pixel wide, so a lone token is never thinner than the screen can show.
    std::ostringstream path;
    for (int64_t pos : spec.ticks[r].positions) path << 'M' << px(fx(double(pos) + 0.5)) << ' ' << px(y) << 'v' << px(kTick - 2);
    if (!spec.ticks[r].positions.empty()) s << "<path d=\"" << path.str() << "\" stroke=\"" << escape(spec.ticks[r].color) << "\" stroke-width=\"1.2\"/>";
  }
  const double axis_y = spec.height - 4;
  text(s, x0, axis_y, "position " + std::to_string(spec.first), "start", " class=\"legend\"");
  text(s, x1, axis_y, std::to_string(spec.last), "end", " class=\"legend\"");
  s << "</svg>";
  return s.str();
}

}  // namespace hisa::svg
