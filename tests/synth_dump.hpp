#pragma once
// A synthetic dump written for a test (synth/synth.hpp), the shape given in one call.
#include <cstdint>
#include <string>

#include "synth/synth.hpp"

namespace hisa::test {

struct SynthShape {
  SynthProfile profile = SynthProfile::Mixed;
  int64_t seq_len = 2048;
  int layers = 2;
  int heads = 4, head_dim = 64;
  int64_t topk = 64;
  std::string queries = "sample:16";
  uint64_t seed = 0;
  int gzip_level = SynthOptions{}.gzip_level;  // 0: uncompressed, so dumps of one shape have one size
};

inline std::string write_synth(const std::string& path, const SynthShape& shape) {
  SynthOptions s;
  s.output = path;
  s.profile = shape.profile;
  s.seq_len = shape.seq_len;
  s.layers = shape.layers;
  s.heads = shape.heads;
  s.head_dim = shape.head_dim;
  s.index_topk = shape.topk;
  s.queries = parse_query_selection(shape.queries);
  s.seed = shape.seed;
  s.gzip_level = shape.gzip_level;
  write_synth_dump(s);
  return path;
}

}  // namespace hisa::test
