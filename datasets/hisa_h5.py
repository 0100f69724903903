"""Writing v1 dumps (datasets/FORMAT.md) from Python with h5py and numpy only (no ml_dtypes).

Shared by the capture tool (datasets/capture/) and the fixture script (datasets/fixtures/).
"""
import sys

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


# ----- a serving stack's own selection: topk_ref and what rule it follows (FORMAT.md, "Declaring what topk_ref is")

REF_METHODS = ("flat", "hisa", "block-sparse")
REF_FORCED = ("in-budget", "extra")
REF_POOL_PRECISIONS = ("fp32", "fp8")


def _as_numpy(selection):
    """A torch tensor (CPU or CUDA) becomes a numpy array; anything else goes through np.asarray. torch is
    never imported here: if it is not loaded, `selection` cannot be a torch tensor."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(selection, torch.Tensor):
        return selection.detach().cpu().numpy()
    return np.asarray(selection)


MAX_SELECTION_SIZE = 2**24  # the largest k, B and m hisa accepts (src/select/config.hpp)


def _positive_int(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not 1 <= value <= MAX_SELECTION_SIZE:
        raise ValueError(f"{name} must be an integer from 1 to {MAX_SELECTION_SIZE}, got {value}")
    return np.int64(value)


def write_topk_ref(group, selection, index_topk, method="flat", block_size=None, blocks=None, forced=None,
                   pool_precision=None, replace=False):
    """Attach a serving stack's selection to a layer group as `topk_ref` (int32 [Nq, index_topk], -1 padded).

    selection: numpy array or torch tensor [Nq, n], n <= index_topk, integers >= -1 (-1: padding), any order.
    method ("flat", "hisa", "block-sparse"; None writes no attribute, which means "flat"), block_size, blocks,
    forced ("in-budget", "extra") and pool_precision ("fp32", "fp8") declare the rule it follows; None
    attributes are omitted (the audit then uses its own settings). The block attributes need hisa or
    block-sparse. replace=True replaces an existing topk_ref. Raises ValueError on anything invalid, before
    anything is written.
    """
    values = _as_numpy(selection)
    if values.ndim != 2:
        raise ValueError(f"topk_ref: selection must be 2-D [Nq, n], got shape {values.shape}")
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"topk_ref: selection must hold integers, got dtype {values.dtype}")
    index_topk = int(_positive_int("index_topk", index_topk))
    rows, width = values.shape
    if width > index_topk:
        raise ValueError(f"topk_ref: selection has {width} columns, more than index_topk = {index_topk}")
    if values.size:
        low, high = int(values.min()), int(values.max())
        if low < -1:
            raise ValueError(f"topk_ref: selection holds {low}; entries must be positions >= 0 or -1 (padding)")
        limit = int(group["k"].shape[0]) if "k" in group else 2**31
        if high >= limit:
            raise ValueError(f"topk_ref: selection holds {high}, not a position below L = {limit}"
                             if "k" in group else f"topk_ref: selection holds {high}, beyond int32")
    if "q_pos" in group and group["q_pos"].shape[0] != rows:
        raise ValueError(f"topk_ref: selection has {rows} rows but q_pos has {group['q_pos'].shape[0]} queries")
    attrs = {}
    if method is not None:
        if method not in REF_METHODS:
            raise ValueError(f"topk_ref: method must be one of {', '.join(REF_METHODS)}, got {method!r}")
        attrs["method"] = method
    block_attrs = {"block_size": block_size, "blocks": blocks, "forced": forced, "pool_precision": pool_precision}
    given = [name for name, value in block_attrs.items() if value is not None]
    if given and method not in ("hisa", "block-sparse"):
        raise ValueError(f"topk_ref: {', '.join(given)} only apply to method hisa or block-sparse, "
                         f"not {method or 'flat'!r}")
    for name in ("block_size", "blocks"):
        if block_attrs[name] is not None:
            attrs[name] = _positive_int(name, block_attrs[name])
    for name, allowed in (("forced", REF_FORCED), ("pool_precision", REF_POOL_PRECISIONS)):
        value = block_attrs[name]
        if value is not None:
            if value not in allowed:
                raise ValueError(f"topk_ref: {name} must be one of {', '.join(allowed)}, got {value!r}")
            attrs[name] = str(value)
    if "topk_ref" in group:
        if not replace:
            raise ValueError(f"{group.name}/topk_ref exists already (pass replace=True to replace it)")
        del group["topk_ref"]
    padded = np.full((rows, index_topk), -1, dtype=np.int32)
    padded[:, :width] = values
    write_array(group, "topk_ref", padded)
    dset = group["topk_ref"]
    for name, value in attrs.items():
        dset.attrs[name] = value
    return dset
