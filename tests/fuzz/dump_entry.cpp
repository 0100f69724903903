#include "fuzz/dump_entry.hpp"

#include <algorithm>
#include <fstream>
#include <stdexcept>

#include "core/error.hpp"
#include "io/dump_reader.hpp"
#include "pipelines/audit.hpp"

namespace hisa::fuzz {

namespace {

// A mutated header can claim a layer of 2^40 keys that HDF5 would happily serve as fill values from a 20 KB
// file. Such a file is not damaged, only too big to read here: the fuzzer would report the allocation as an
// out-of-memory finding. Layers whose decoded keys or queries exceed this many floats are described but not read.
constexpr int64_t kMaxDecodedFloats = int64_t(1) << 22;  // 16 MiB of float32

int64_t decoded_floats(int64_t rows, int64_t per_row) {
  int64_t out = 0;
  if (rows < 0 || per_row < 0 || __builtin_mul_overflow(rows, per_row, &out)) return INT64_MAX;
  return out;
}

bool small_enough(const LayerShape& sh) {
  int64_t per_query = 0;
  if (__builtin_mul_overflow(sh.heads, sh.dim, &per_query)) return false;
  return decoded_floats(sh.keys, sh.dim) <= kMaxDecodedFloats &&
         decoded_floats(sh.queries, per_query) <= kMaxDecodedFloats;
}

// `hisa inspect --check`: every layer described, every value read and validated. Returns false when some
// layer was too big to read (then the audit is skipped too).
bool inspect_and_check(const DumpReader& reader) {
  bool all_read = true;
  for (const auto& s : reader.samples()) {
    for (int layer : s.layers) {
      LayerReader lr = reader.open_layer(s.name, layer);
      lr.describe();
      if (!small_enough(lr.shape())) {
        all_read = false;
        continue;
      }
      { LayerKeys keys = lr.read_keys(); }
      const int64_t batch = 256;  // as inspect --check reads them
      for (int64_t i = 0; i < lr.shape().queries; i += batch) {
        lr.read_queries(i, std::min(batch, lr.shape().queries - i));
      }
    }
  }
  return all_read;
}

// `hisa audit FILE --topk 4 --block-size 4 --blocks 2 --max-queries 4 --worst 2 --device cpu --threads 1`:
// small enough to run per input, and it still exercises pooling, both selections, the metrics and misses.
void tiny_audit(const std::string& path) {
  AuditOptions o;
  o.files = {path};
  o.max_queries = 4;
  o.topk = 4;
  o.config.block_size = 4;
  o.config.blocks = 2;
  o.run.device = "cpu";
  o.threads = 1;
  o.progress = false;
  o.worst = 2;
  run_audit(o);
}

}  // namespace

void exercise_dump(const std::string& path) {
  DumpReader reader(path);
  if (inspect_and_check(reader)) tiny_audit(path);
}

Outcome exercise_bytes(const uint8_t* data, size_t size, const std::string& path) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
    if (!out) throw std::runtime_error("cannot write the fuzz input to " + path);
  }
  try {
    exercise_dump(path);
    return Outcome::Accepted;
  } catch (const InputError&) {
    return Outcome::Rejected;
  } catch (const UsageError&) {
    return Outcome::Rejected;
  }
}

}  // namespace hisa::fuzz
