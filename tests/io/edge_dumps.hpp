#pragma once
// Tiny dumps for the edge cases of docs/definitions.md, "Edge cases", written with the project's DumpWriter: the library tests
// (tests/pipelines/test_edge_cases.cpp) and the CLI tests (tests/cli/test_cli_edge_cases.cpp) read the same files.
#include <string>

#include "io/dump_helpers.hpp"
#include "io/h5.hpp"
#include "select/random_layer.hpp"

namespace hisa::test {

enum class EdgeDump {
  OneKey,       // L = 1: one key, one query at position 0; index_topk 4
  ShortRows,    // L = 40, index_topk 100: k larger than every row
  OneHeadD7,    // H = 1, D = 7
  OneHeadD13,   // H = 1, D = 13
  NoQueries,    // sample "s0": layer 0 with Nq = 0, layer 1 with 3 queries; sample "empty": no layers
  OnlyEmpty,    // one sample, no layers at all
  Overflow,     // overflow_layer(): fp32 scores of +inf and NaN (-inf); f32, index_topk 6
};

// The in-memory layer as the writer takes it (f32 q and k: every value stored exactly).
inline LayerArrays arrays_of(const Layer& l) {
  LayerArrays a;
  a.keys = l.keys.count;
  a.queries = l.batch.count;
  a.heads = l.batch.heads;
  a.dim = l.batch.dim;
  a.q_type = a.k_type = ElementType::F32;
  a.k = l.keys.k;
  a.q = l.batch.q;
  a.w = l.batch.w;
  a.q_pos = l.batch.q_pos;
  a.k_start = l.batch.k_start;
  return a;
}

inline void write_edge_dump(const std::string& path, EdgeDump kind) {
  const ElementType bf16 = ElementType::BF16;
  SampleAttributes sample;
  sample.seq_len = 40;
  switch (kind) {
    case EdgeDump::OneKey: {
      DumpWriter w(path, small_file_attributes(2, 8, 4));
      sample.seq_len = 1;
      w.add_sample("s0", sample);
      w.add_layer("s0", 0, make_layer(1, 1, 2, 8, bf16, bf16, 7));
      return;
    }
    case EdgeDump::ShortRows: {
      DumpWriter w(path, small_file_attributes(2, 8, 100));
      w.add_sample("s0", sample);
      w.add_layer("s0", 0, make_layer(40, 5, 2, 8, bf16, bf16, 8, true, 100));
      return;
    }
    case EdgeDump::OneHeadD7:
    case EdgeDump::OneHeadD13: {
      const int64_t dim = kind == EdgeDump::OneHeadD7 ? 7 : 13;
      DumpWriter w(path, small_file_attributes(1, dim, 4));
      w.add_sample("s0", sample);
      w.add_layer("s0", 0, make_layer(40, 9, 1, dim, ElementType::F32, bf16, 9));
      return;
    }
    case EdgeDump::NoQueries: {
      DumpWriter w(path, small_file_attributes());
      w.add_sample("s0", sample);
      w.add_layer("s0", 0, make_layer(40, 0, 2, 8, bf16, bf16, 10));
      w.add_layer("s0", 1, make_layer(40, 3, 2, 8, bf16, bf16, 11));
      w.add_sample("empty", sample);
      return;
    }
    case EdgeDump::OnlyEmpty: {
      DumpWriter w(path, small_file_attributes());
      w.add_sample("empty", sample);
      return;
    }
    case EdgeDump::Overflow: {
      const Layer l = overflow_layer();
      DumpWriter w(path, small_file_attributes(l.batch.heads, l.batch.dim, 6));
      sample.seq_len = l.keys.count;
      w.add_sample("s0", sample);
      w.add_layer("s0", 0, arrays_of(l));
      return;
    }
  }
}

// The selections `hisa select` wrote for one layer, -1 padding dropped.
inline std::vector<std::vector<int64_t>> read_selections(const std::string& path, const std::string& layer_group) {
  h5::Handle f = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  h5::Handle d = h5::dataset(H5Dopen2(f.get(), (layer_group + "/indices").c_str(), H5P_DEFAULT));
  const auto dims = h5::dataset_dims(d.get());
  std::vector<int32_t> flat(size_t(dims[0] * dims[1]));
  if (!flat.empty()) h5::read_rows(d.get(), H5T_NATIVE_INT32, 0, dims[0], flat.data());
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(dims[0]));
  for (int64_t i = 0; i < dims[0]; ++i) {
    for (int64_t j = 0; j < dims[1]; ++j) {
      if (flat[size_t(i * dims[1] + j)] >= 0) out[size_t(i)].push_back(flat[size_t(i * dims[1] + j)]);
    }
  }
  return out;
}

}  // namespace hisa::test
