// train/plot.cpp: see plot.h.
#include "train/plot.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>

#include "engine/error.h"

#include <stb/stb_image_write.h>

namespace mm::train {

namespace {

// 5x7 glyphs, one byte per row, bit 4 the leftmost pixel.
const std::map<char, std::array<uint8_t, 7>>& font() {
  static const std::map<char, std::array<uint8_t, 7>> f = {
      {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
      {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
      {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
      {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
      {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
      {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
      {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}}, {'@', {0x0E, 0x11, 0x17, 0x15, 0x17, 0x10, 0x0E}},
      {' ', {0, 0, 0, 0, 0, 0, 0}},   {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
      {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}}, {'\'', {0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00}},
      {'&', {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D}}, {'!', {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04}},
      {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}}, {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
      {'#', {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A}}, {'*', {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00}},
      {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}},
      {'a', {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F}}, {'b', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}},
      {'c', {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E}}, {'d', {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}},
      {'e', {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E}}, {'f', {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}},
      {'g', {0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E}}, {'h', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}},
      {'i', {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E}}, {'j', {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C}},
      {'k', {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}}, {'l', {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
      {'m', {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11}}, {'n', {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}},
      {'o', {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E}}, {'p', {0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10}},
      {'q', {0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01}}, {'r', {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}},
      {'s', {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E}}, {'t', {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}},
      {'u', {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D}}, {'v', {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04}},
      {'w', {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A}}, {'x', {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}},
      {'y', {0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E}}, {'z', {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F}},
  };
  return f;
}

struct Canvas {
  int w, h;
  std::vector<uint8_t> px;
  Canvas(int w_, int h_) : w(w_), h(h_), px(static_cast<size_t>(w_) * h_ * 3, 255) {}
  void set(int x, int y, uint8_t r, uint8_t g, uint8_t b) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
    p[0] = r, p[1] = g, p[2] = b;
  }
  // Bresenham, 2 pixels thick.
  void line(int x0, int y0, int x1, int y1, uint8_t r, uint8_t g, uint8_t b, int thick = 1) {
    int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;
    for (;;) {
      for (int t = 0; t < thick; ++t) set(x0, y0 + t, r, g, b);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * e;
      if (e2 >= dy) e += dy, x0 += sx;
      if (e2 <= dx) e += dx, y0 += sy;
    }
  }
  void text(int x, int y, const std::string& s, uint8_t r = 0, uint8_t g = 0, uint8_t b = 0) {
    for (char c : s) {
      auto it = font().find(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
      if (it != font().end())
        for (int row = 0; row < 7; ++row)
          for (int col = 0; col < 5; ++col)
            if (it->second[static_cast<size_t>(row)] & (0x10 >> col)) set(x + col, y + row, r, g, b);
      x += 6;
    }
  }
};

}  // namespace

void draw_text(std::vector<uint8_t>& rgb, int width, int height, int x, int y, const std::string& text, uint8_t r,
               uint8_t g, uint8_t b) {
  Canvas c(0, 0);
  c.w = width, c.h = height;
  c.px.swap(rgb);
  c.text(x, y, text, r, g, b);
  c.px.swap(rgb);
}

namespace {

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

}  // namespace

void save_loss_plot(const std::string& path, const std::vector<Series>& series, int width, int height) {
  double lo = INFINITY, hi = -INFINITY;
  int64_t s0 = INT64_MAX, s1 = INT64_MIN;
  for (const auto& s : series)
    for (const auto& [step, v] : s.points)
      if (std::isfinite(v) && v > 0) lo = std::min(lo, v), hi = std::max(hi, v), s0 = std::min(s0, step), s1 = std::max(s1, step);
  MM_CHECK(lo <= hi, "[plot] '", path, "': no positive finite values to plot");
  if (s1 == s0) s1 = s0 + 1;
  // Log axis over whole or half decades around the data.
  double ylo = std::pow(10.0, std::floor(std::log10(lo))), yhi = std::pow(10.0, std::ceil(std::log10(hi)));
  if (yhi / ylo < 10) yhi = ylo * 10;
  Canvas c(width, height);
  const int left = 60, right = width - 20, top = 30, bottom = height - 40;
  auto X = [&](int64_t step) {
    return left + static_cast<int>(std::lround(static_cast<double>(step - s0) / static_cast<double>(s1 - s0) * (right - left)));
  };
  auto Y = [&](double v) {
    return bottom - static_cast<int>(std::lround((std::log10(v) - std::log10(ylo)) / (std::log10(yhi) - std::log10(ylo)) * (bottom - top)));
  };
  // Grid: 1, 2, 5 per decade; labels on the decades and 2, 5 when there are few decades.
  const int decades = static_cast<int>(std::lround(std::log10(yhi / ylo)));
  for (double d = ylo; d < yhi * 1.001; d *= 10)
    for (double m : {1.0, 2.0, 5.0}) {
      const double v = d * m;
      if (v > yhi * 1.001) break;
      const int y = Y(v);
      c.line(left, y, right, y, m == 1.0 ? 200 : 230, m == 1.0 ? 200 : 230, m == 1.0 ? 200 : 230);
      if (m == 1.0 || decades <= 2) c.text(4, y - 3, fmt(v), 80, 80, 80);
    }
  for (int i = 0; i <= 5; ++i) {  // x ticks
    const int64_t step = s0 + (s1 - s0) * i / 5;
    const int x = X(step);
    c.line(x, bottom, x, bottom + 4, 0, 0, 0);
    c.text(x - 3 * static_cast<int>(fmt(static_cast<double>(step)).size()), bottom + 8, fmt(static_cast<double>(step)));
  }
  c.text((left + right) / 2 - 12, bottom + 22, "step");
  c.line(left, top, left, bottom, 0, 0, 0);
  c.line(left, bottom, right, bottom, 0, 0, 0);
  int legend_x = left + 10;
  for (const auto& s : series) {
    bool have = false;
    int px = 0, py = 0;
    for (const auto& [step, v] : s.points) {
      if (!(std::isfinite(v) && v > 0)) continue;
      const int x = X(step), y = Y(v);
      if (have) c.line(px, py, x, y, s.r, s.g, s.b, 2);
      else c.set(x, y, s.r, s.g, s.b);
      have = true, px = x, py = y;
    }
    for (int dy = 0; dy < 7; ++dy) c.line(legend_x, 10 + dy, legend_x + 14, 10 + dy, s.r, s.g, s.b);
    c.text(legend_x + 18, 10, s.name);
    legend_x += 18 + 6 * static_cast<int>(s.name.size()) + 20;
  }
  MM_CHECK(stbi_write_png(path.c_str(), width, height, 3, c.px.data(), width * 3) != 0, "[plot] cannot write '", path,
           "'");
}

}  // namespace mm::train
