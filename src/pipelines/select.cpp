#include "pipelines/select.hpp"

#include <algorithm>

#include "core/atomic_file.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "io/dump_reader.hpp"
#include "io/h5.hpp"
#include "io/query_subset.hpp"
#include "pipelines/common.hpp"
#include "select/bounds.hpp"
#include "select/certified.hpp"
#include "select/engine.hpp"

namespace hisa {

namespace {

void write_dataset(hid_t group, const char* name, hid_t file_type, hid_t mem_type, std::vector<hsize_t> dims,
                   const void* data, const std::string& output, const std::string& where) {
  h5::Handle space = h5::dataspace(H5Screate_simple(int(dims.size()), dims.data(), nullptr));
  h5::Handle dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
  if (dims[0] > 0) {
    std::vector<hsize_t> chunk = dims;
    chunk[0] = std::min<hsize_t>(dims[0], 64);
    H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data());
    H5Pset_shuffle(dcpl.get());
    H5Pset_deflate(dcpl.get(), 4);
  }
  h5::Handle d = h5::dataset(H5Dcreate2(group, name, file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
  if (!d || H5Dwrite(d.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    throw UsageError("writing " + output + " failed at " + where + "/" + name + " (disk full or file size limit?)");
  }
}

}  // namespace

namespace {

// run(sub, out) on the queries of the batch that see a key row, as one batch; the others get an empty selection.
template <typename Run>
void for_seeing_rows(const QueryBatch& batch, std::vector<std::vector<int64_t>>& out, Run run) {
  const std::vector<int64_t> seeing = rows_seeing_keys(batch);
  if (int64_t(seeing.size()) == batch.count) return run(batch, out);
  std::vector<std::vector<int64_t>> some;
  if (!seeing.empty()) run(batch_rows(batch, seeing), some);
  out.assign(size_t(batch.count), {});
  for (size_t j = 0; j < seeing.size(); ++j) out[size_t(seeing[j])] = std::move(some[j]);
}

}  // namespace

void select_batch(SelectionEngine& engine, const QueryBatch& batch, Method method,
                  std::vector<std::vector<int64_t>>& out) {
  for_seeing_rows(batch, out, [&](const QueryBatch& run, std::vector<std::vector<int64_t>>& sel) {
    engine.select(run, method, sel);
  });
}

std::vector<int32_t> selection_matrix(const std::vector<std::vector<int64_t>>& selections, Method method, int64_t topk,
                                      int64_t keys, int64_t& width) {
  // No selection holds more than the layer's L keys: a k beyond L pads to L, not to k (docs/commands/select.md).
  width = method == Method::Block ? 0 : std::min(topk, keys);
  for (const auto& sel : selections) width = std::max(width, int64_t(sel.size()));
  std::vector<int32_t> indices(selections.size() * size_t(width), -1);
  for (size_t i = 0; i < selections.size(); ++i) {
    std::copy(selections[i].begin(), selections[i].end(), indices.begin() + ptrdiff_t(i * size_t(width)));
  }
  return indices;
}

int64_t run_select(const SelectOptions& o) {
  if (o.input.files.size() != 1) throw UsageError("select takes exactly one input file");
  if (o.certified && o.method != Method::Flat) throw std::invalid_argument("run_select: certified is a way to find flat DSA");
  DumpReader reader(o.input.files.front(), o.input.reader);
  SelectionConfig config = o.input.config;
  config.topk = o.input.topk.value_or(reader.attributes().index_topk);
  config.validate();
  auto engine = make_engine(o.input.run.device, o.input.threads, o.input.run.fp8_mma);

  h5::silence_errors();
  // Written to a temporary file that replaces o.output only once complete: a failed, killed or interrupted run
  // leaves the previous file as it was.
  OutputFile output(o.output, OutputFile::Temporary::Named);
  h5::Handle file = h5::file(H5Fcreate(output.temporary_path().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  if (!file) throw OptionError("output", "{output}: cannot create an HDF5 file for " + o.output);
  hid_t root = file.get();
  h5::write_string_attribute(root, "format", "hisa-selection");
  h5::write_int_attribute(root, "format_version", 1);
  h5::write_string_attribute(root, "source_file", reader.path());
  h5::write_string_attribute(root, "method", o.certified ? "certified" : std::string(method_name(o.method)));
  h5::write_int_attribute(root, "topk", config.topk);
  h5::write_int_attribute(root, "block_size", config.block_size);
  h5::write_int_attribute(root, "blocks", o.method == Method::Block ? config.block_sparse_blocks() : config.blocks);
  h5::write_string_attribute(root, "forced",
                             std::string(forced_mode_name(o.method == Method::Block ? ForcedMode::InBudget : config.forced)));
  h5::write_string_attribute(root, "pool_precision", std::string(pool_precision_name(config.pool)));
  h5::write_string_attribute(root, "engine", engine->name());

  std::vector<const SampleEntry*> samples;
  for (const auto& s : reader.samples()) {
    if (o.input.samples.empty() ||
        std::find(o.input.samples.begin(), o.input.samples.end(), s.name) != o.input.samples.end()) {
      samples.push_back(&s);
    }
  }
  for (const auto& name : o.input.samples) reader.sample(name);  // InputError when absent
  int64_t written = 0, units = 0, done = 0;
  for (const auto* s : samples) units += int64_t(s->layers.size());
  Progress progress(units, o.input.progress);
  std::vector<std::vector<int64_t>> selections;
  for (const auto* s : samples) {
    h5::Handle sg = h5::group(H5Gcreate2(root, s->name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    for (int layer : s->layers) {
      if (!o.input.layers.empty() && !o.input.layers.contains(layer)) {
        ++done;
        continue;
      }
      progress.advance(done, s->name + " layer " + std::to_string(layer));
      log_verbose(engine->name() + ": layer " + std::to_string(layer) + " of " + s->name);
      LayerReader lr = reader.open_layer(s->name, layer);
      LayerKeys keys = lr.read_keys();
      engine->set_layer(keys, config);
      const auto picked = pick_queries(lr.shape().queries, o.input.max_queries);
      std::vector<std::vector<int64_t>> all;
      std::vector<int64_t> q_pos;
      for (size_t at = 0; at < picked.size(); at += size_t(kQueryBatch)) {
        std::vector<int64_t> part(picked.begin() + at, picked.begin() + std::min(picked.size(), at + size_t(kQueryBatch)));
        const QueryBatch batch = read_query_subset(lr, part);
        if (o.certified) {
          // Exact by construction, on the CPU whatever the device: it is a search, not a bulk scan.
          for_seeing_rows(batch, selections, [&](const QueryBatch& run, std::vector<std::vector<int64_t>>& out) {
            out = certified_select(keys, BlockBounds(keys, config.block_size), run, config.topk, o.input.threads).selections;
          });
        } else {
          select_batch(*engine, batch, o.method, selections);
        }
        for (int64_t i = 0; i < batch.count; ++i) {
          all.push_back(std::move(selections[size_t(i)]));
          q_pos.push_back(batch.token_position(i));
        }
      }
      int64_t width = 0;
      const std::vector<int32_t> indices = selection_matrix(all, o.method, config.topk, lr.shape().keys, width);
      const std::string where = "/" + s->name + "/layer_" + std::to_string(layer);
      h5::Handle lg = h5::group(H5Gcreate2(sg.get(), ("layer_" + std::to_string(layer)).c_str(), H5P_DEFAULT,
                                           H5P_DEFAULT, H5P_DEFAULT));
      h5::write_int_attribute(lg.get(), "layer", layer);
      if (lr.shape().compress_ratio != 1) h5::write_int_attribute(lg.get(), "compress_ratio", lr.shape().compress_ratio);
      const hsize_t n = all.size();
      write_dataset(lg.get(), "indices", H5T_STD_I32LE, H5T_NATIVE_INT32, {n, hsize_t(width)}, indices.data(), o.output, where);
      write_dataset(lg.get(), "q_pos", H5T_STD_I64LE, H5T_NATIVE_INT64, {n}, q_pos.data(), o.output, where);
      write_dataset(lg.get(), "query", H5T_STD_I64LE, H5T_NATIVE_INT64, {n}, picked.data(), o.output, where);
      written += int64_t(n);
      ++done;
    }
  }
  if (H5Fflush(root, H5F_SCOPE_GLOBAL) < 0 || file.close() < 0) {
    throw UsageError("writing " + o.output + " failed (disk full or file size limit?)");
  }
  output.commit();
  progress.finish();
  return written;
}

}  // namespace hisa
