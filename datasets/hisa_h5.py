"""Writing v1 dumps (datasets/FORMAT.md) from Python with h5py and numpy only (no ml_dtypes).

Shared by the capture tool (datasets/capture/) and the fixture script (datasets/fixtures/).
"""
import h5py
import numpy as np


def bfloat16_type():
    """bfloat16 as an HDF5 float: sign bit 15, exponent bits 7-14 (bias 127), mantissa bits 0-6, 2 bytes."""
    t = h5py.h5t.IEEE_F32LE.copy()
    t.set_fields(15, 7, 8, 0, 7)  # sign position, exponent position, exponent size, mantissa position, size
    t.set_size(2)
    t.set_ebias(127)
    return t


def row_chunks(shape, rows):
    """Chunks of whole token rows, as FORMAT.md recommends."""
    return (max(1, min(rows, shape[0])),) + tuple(shape[1:])


def write_bfloat16_bits(group, name, bits, chunk_rows=1024, compress=True):
    """A dataset of bfloat16 given as its uint16 bit patterns; HDF5 copies the bits without converting."""
    bits = np.ascontiguousarray(bits, dtype=np.uint16)
    tid = bfloat16_type()
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    if bits.shape[0] > 0:
        dcpl.set_chunk(row_chunks(bits.shape, chunk_rows))
        if compress:
            dcpl.set_shuffle()
            dcpl.set_deflate(4)
    dcpl.set_obj_track_times(False)  # no timestamps: the same input gives the same file
    space = h5py.h5s.create_simple(bits.shape)
    dset = h5py.h5d.create(group.id, name.encode(), tid, space, dcpl=dcpl)
    dset.write(h5py.h5s.ALL, h5py.h5s.ALL, bits, mtype=tid)


def write_array(group, name, values, chunk_rows=1024, compress=True):
    """A plain numpy array (float32, int64, int32) with row chunks and optional gzip."""
    values = np.ascontiguousarray(values)
    opts = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if compress and values.size else {}
    chunks = row_chunks(values.shape, chunk_rows) if values.shape[0] > 0 else None
    group.create_dataset(name, data=values, chunks=chunks, track_times=False, **opts)
