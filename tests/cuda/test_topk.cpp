// The top-k kernel (topk.cu) on adversarial, long and random rows, against the CPU's topk_range (itself tested
// against a full sort).
#include <gtest/gtest.h>

#include <limits>
#include <random>

#include "gpu_test_util.hpp"

namespace hisa {
namespace {

using namespace gpu_test;

void expect_topk_matches_cpu(const std::vector<std::vector<float>>& rows, int64_t k, const std::string& what) {
  SCOPED_TRACE(what + " k=" + std::to_string(k));
  const int64_t first = 1000;
  const auto got = cuda::topk_rows(rows, first, k, gpu_device());
  ASSERT_EQ(got.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<int64_t> want;
    topk_range(rows[i], first, k, want);
    EXPECT_EQ(got[i], want) << "row " << i << " of length " << rows[i].size();
  }
}

TEST(CudaTopK, AdversarialRows) {
  REQUIRE_GPU();
  const float inf = std::numeric_limits<float>::infinity(), big = std::numeric_limits<float>::max();
  std::mt19937_64 rng(3);
  std::vector<std::vector<float>> rows;
  rows.push_back(std::vector<float>(5000, 1.5f));                 // all equal
  rows.push_back(std::vector<float>(5000, -inf));                 // all -inf
  rows.push_back(std::vector<float>(5000, 0.0f));                 // zeros of both signs
  for (size_t j = 0; j < rows.back().size(); j += 2) rows.back()[j] = -0.0f;
  std::vector<float> huge(7000);
  for (auto& v : huge) v = (rng() & 1 ? big : -big) * float(rng() % 4) / 3.0f;
  rows.push_back(huge);                                           // huge values, heavy ties
  std::vector<float> mixed(9000);
  for (auto& v : mixed) {
    const int x = int(rng() % 7);
    v = x == 0 ? -inf : x == 1 ? inf : x == 2 ? 0.0f : float(int(rng() % 11) - 5) * 1e-30f;
  }
  rows.push_back(mixed);                                          // infinities, tiny values, zeros
  rows.push_back({});                                             // empty
  rows.push_back({2.0f});
  for (int64_t k : {1, 7, 64, 1000, 2048, 4096}) expect_topk_matches_cpu(rows, k, "adversarial");

  // Lengths around k, including exactly k and k ± 1.
  for (int64_t k : {1, 100, 2048, 4096}) {
    std::vector<std::vector<float>> around;
    for (int64_t len : {k - 1, k, k + 1, 2 * k}) {
      if (len < 0) continue;
      std::vector<float> r(static_cast<size_t>(len));
      for (auto& v : r) v = float(int(rng() % 50)) * 0.25f;
      around.push_back(r);
    }
    expect_topk_matches_cpu(around, k, "around k");
  }
}

TEST(CudaTopK, LongRows) {
  REQUIRE_GPU();
  std::mt19937_64 rng(9);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::vector<std::vector<float>> rows;
  std::vector<float> r(131072);
  for (auto& v : r) v = gauss(rng);
  rows.push_back(r);  // distinct values
  for (auto& v : r) v = round_to(ElementType::BF16, gauss(rng));
  rows.push_back(r);  // bf16-coarse values: many ties
  for (auto& v : r) v = float(int(rng() % 3));
  rows.push_back(r);  // three levels: the cut-off bucket holds ~44K keys (no shared-memory shortcut)
  for (auto& v : r) v = 1e-3f * float(int(rng() % 100000));
  rows.push_back(r);
  std::vector<float> one_big(131072, 0.5f);
  one_big[77777] = 2.0f;
  rows.push_back(one_big);
  for (int64_t k : {2048, 4096}) expect_topk_matches_cpu(rows, k, "131072-long");
}

// One-segment rows of 16K-53K scores (between the rows of at most 8,192 read once into shared memory and the
// 128K rows above): row strides of every residue mod 4, so rows start at every offset within 16 bytes, lengths
// of every residue, with distinct values, ties and a cut-off bucket of about a third of the row.
TEST(CudaTopK, MediumRowsAtEveryAlignment) {
  REQUIRE_GPU();
  std::mt19937_64 rng(17);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  for (const int64_t width : {16381, 16384, 30001, 32766, 53243, 53244, 53245}) {
    std::vector<std::vector<float>> rows;
    for (int i = 0; i < 6; ++i) {
      const int64_t n = width - i;  // every residue mod 4, and the longest row the stride allows
      std::vector<float> r(static_cast<size_t>(n));
      for (auto& v : r) {
        v = i % 3 == 0 ? gauss(rng) : i % 3 == 1 ? round_to(ElementType::BF16, gauss(rng)) : float(int(rng() % 3));
      }
      rows.push_back(r);
    }
    for (int64_t k : {1, 2048}) expect_topk_matches_cpu(rows, k, "width " + std::to_string(width));
  }
}

TEST(CudaTopK, RandomRowsAgainstCpu) {
  REQUIRE_GPU();
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<std::vector<float>> rows;
    const int64_t k = std::uniform_int_distribution<int64_t>(1, 600)(rng);
    for (int i = 0; i < 10; ++i) {
      const int64_t n = std::uniform_int_distribution<int64_t>(0, 3000)(rng);
      const int levels = std::uniform_int_distribution<int>(1, 50)(rng);
      std::vector<float> row(static_cast<size_t>(n));
      for (auto& v : row) {
        const int x = std::uniform_int_distribution<int>(-levels, levels)(rng);
        v = x == 0 ? (rng() & 1 ? -0.0f : 0.0f) : (x == -levels ? -INFINITY : float(x) * 0.37f);
      }
      rows.push_back(row);
    }
    expect_topk_matches_cpu(rows, k, "trial " + std::to_string(trial));
  }
}
}  // namespace
}  // namespace hisa
