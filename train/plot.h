// train/plot.h: the loss-curve PNG that mmtrain writes at the end of a run: one line per
// series over the steps, a log-scale y axis with labelled ticks, a legend. Drawn pixel by
// pixel with a built-in 5x7 font (digits, a few letters), so no plotting library is needed.
// Reading order: after checkpoint.h. Test: ./build/mm_tests --source-file=*test_train.cpp
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mm::train {

struct Series {
  std::string name;                             // legend text (lower-case letters, digits, " .-_@")
  std::vector<std::pair<int64_t, double>> points;  // (step, value), value > 0
  uint8_t r = 0, g = 0, b = 0;
};

// Draws `text` into an RGB buffer (row-major, 3 bytes a pixel) with the built-in 5x7 font,
// 6 pixels a character, top-left at (x, y); characters without a glyph are left blank.
void draw_text(std::vector<uint8_t>& rgb, int width, int height, int x, int y, const std::string& text,
               uint8_t r = 0, uint8_t g = 0, uint8_t b = 0);

// Writes an RGB PNG of width x height. Non-positive or non-finite values are skipped. Throws
// naming the path when nothing can be plotted or the file cannot be written.
void save_loss_plot(const std::string& path, const std::vector<Series>& series, int width = 800, int height = 450);

}  // namespace mm::train
