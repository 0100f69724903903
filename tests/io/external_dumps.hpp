#pragma once
// Dumps that reach outside their file, made with the HDF5 C API from a good dump (bad_dumps.hpp write_base_file):
// an external link in place of a sample, a layer or a dataset, a dataset whose values live in an external raw
// file, and a virtual dataset whose values come from another file.
#include <hdf5.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/bad_dumps.hpp"
#include "io/h5.hpp"
#include "test_util.hpp"

namespace hisa::test {

inline void h5_check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("test setup failed: " + what);
}

inline h5::Handle open_for_writing(const std::string& path) {
  h5::silence_errors();
  h5::Handle f = h5::file(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
  h5_check(f.valid(), "open " + path);
  return f;
}

// Link `link` (an absolute HDF5 path whose parent exists) becomes an external link to target_file:target_object,
// replacing what was there.
inline void make_external_link(const std::string& path, const std::string& link, const std::string& target_file,
                               const std::string& target_object) {
  h5::Handle f = open_for_writing(path);
  if (H5Lexists(f.get(), link.c_str(), H5P_DEFAULT) > 0) H5Ldelete(f.get(), link.c_str(), H5P_DEFAULT);
  h5_check(H5Lcreate_external(target_file.c_str(), target_object.c_str(), f.get(), link.c_str(), H5P_DEFAULT,
                              H5P_DEFAULT) >= 0,
           "external link " + link);
}

// Link `link` becomes a soft link to `target` (inside the file).
inline void make_soft_link(const std::string& path, const std::string& link, const std::string& target) {
  h5::Handle f = open_for_writing(path);
  if (H5Lexists(f.get(), link.c_str(), H5P_DEFAULT) > 0) H5Ldelete(f.get(), link.c_str(), H5P_DEFAULT);
  h5_check(H5Lcreate_soft(target.c_str(), f.get(), link.c_str(), H5P_DEFAULT, H5P_DEFAULT) >= 0, "soft link " + link);
}

// The stored bytes, type and shape of a dataset, for rewriting it elsewhere.
struct StoredDataset {
  h5::Handle type, space;
  std::vector<char> bytes;
};

inline StoredDataset read_stored(hid_t file, const std::string& dataset) {
  h5::Handle d = h5::dataset(H5Dopen2(file, dataset.c_str(), H5P_DEFAULT));
  h5_check(d.valid(), "open " + dataset);
  StoredDataset s;
  s.type = h5::datatype(H5Dget_type(d.get()));
  s.space = h5::dataspace(H5Dget_space(d.get()));
  s.bytes.resize(size_t(H5Sget_simple_extent_npoints(s.space.get())) * H5Tget_size(s.type.get()));
  h5_check(H5Dread(d.get(), s.type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, s.bytes.data()) >= 0, "read " + dataset);
  return s;
}

// Dataset `dataset` (of an f32 dump: it has no attributes to keep) is rewritten with its values in `raw_file`
// (H5Pset_external; an absolute path, as HDF5 resolves relative ones against the working directory).
inline void move_to_external_raw_file(const std::string& path, const std::string& dataset, const std::string& raw_file) {
  h5::Handle f = open_for_writing(path);
  StoredDataset s = read_stored(f.get(), dataset);
  H5Ldelete(f.get(), dataset.c_str(), H5P_DEFAULT);
  h5::Handle dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
  h5_check(H5Pset_external(dcpl.get(), raw_file.c_str(), 0, hsize_t(s.bytes.size())) >= 0, "H5Pset_external");
  h5::Handle d = h5::dataset(H5Dcreate2(f.get(), dataset.c_str(), s.type.get(), s.space.get(), H5P_DEFAULT, dcpl.get(),
                                        H5P_DEFAULT));
  h5_check(d.valid() && H5Dwrite(d.get(), s.type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, s.bytes.data()) >= 0,
           "write " + dataset + " to " + raw_file);
}

// Dataset `dataset` becomes a virtual dataset mapping all of source_file:source_dataset (which must have its
// type and shape); source_file is stored as given (HDF5 looks for a relative one beside the file).
inline void make_virtual(const std::string& path, const std::string& dataset, const std::string& source_file,
                         const std::string& source_dataset) {
  h5::Handle f = open_for_writing(path);
  StoredDataset s = read_stored(f.get(), dataset);
  H5Ldelete(f.get(), dataset.c_str(), H5P_DEFAULT);
  h5::Handle dcpl = h5::plist(H5Pcreate(H5P_DATASET_CREATE));
  h5_check(H5Pset_virtual(dcpl.get(), s.space.get(), source_file.c_str(), source_dataset.c_str(), s.space.get()) >= 0,
           "H5Pset_virtual");
  h5::Handle d = h5::dataset(H5Dcreate2(f.get(), dataset.c_str(), s.type.get(), s.space.get(), H5P_DEFAULT, dcpl.get(),
                                        H5P_DEFAULT));
  h5_check(d.valid(), "create virtual " + dataset);
}

// A good f32 dump ("main.h5": sample s0, layer 0) and a copy ("other.h5") for links to point into.
struct LinkedDumps {
  TempDir dir;
  std::string main = dir.file("main.h5"), other = dir.file("other.h5");
  LinkedDumps() {
    write_base_file(main, BaseKind::F32);
    std::filesystem::copy_file(main, other);
  }
};

}  // namespace hisa::test
