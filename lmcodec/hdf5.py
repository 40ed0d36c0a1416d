"""HDF5 filter for h5py: lmcodec chunks inside HDF5 datasets (filter id :data:`FILTER_ID`).

Importing this module registers the filter with the libhdf5 that h5py is linked against
(``h5py.h5z.register_filter`` with a ctypes ``H5Z_class2_t``). Use it like an hdf5plugin filter::

    f.create_dataset("x", data=a, chunks=(64, 64), **lmcodec.hdf5.filter_args())
    f.create_dataset("x", data=a, chunks=(64, 64), compression=lmcodec.hdf5.LMFilter())

The filter is always **mandatory**: its ``set_local`` callback, which HDF5 runs when a dataset is
created, rewrites the filter's flags to ``H5Z_FLAG_MANDATORY`` (h5py adds integer filters as
*optional*, and HDF5 silently stores a chunk raw when an optional filter fails). So a chunk the
filter cannot encode makes HDF5 raise when it flushes the chunk (the write call when the
chunk cache is off, ``h5py.File(..., rdcc_nbytes=0)``, else at the latest ``flush``/``close``),
and a chunk it cannot decode (e.g. its model is not installed) makes the read raise. The reason
is logged to the ``lmcodec.hdf5`` logger: HDF5 drops errors that a filter callback pushes (seen
with 2.0.0), so h5py's message only says "filter returned failure". ``set_local`` already
checks that the encoding model is installed, so that failure surfaces at ``create_dataset``.

Each stored chunk is exactly an lmcodec chunk (docs/format.md); its header names the model, so
decoding needs nothing from the filter parameters. The parameters (``cd_values``, 9 unsigned
32-bit ints, layout version :data:`CD_VERSION`) are::

    0     layout version (2)
    1, 2  id of the model that encodes: bytes 0..3 and 4..7 as little-endian u32
          (all zero when the dataset is created: the default model, resolved then)
    3     segment length in bytes (0: LMCodec's default, the model's context, at most 512 in mode lm_mix)
    4     zstd level of the fallback body (signed, two's complement)
    5     mixer version the encoder writes (0 when the dataset is created: the newest, resolved then)
    6     element size in bytes                         } filled in by set_local
    7     dtype code of the chunk header table          } from the dataset's
    8     dtype flags (bit 0: big-endian elements)      } file datatype

``compression_opts`` may give values 0..5 (missing ones take their defaults); 6..8 are always
recomputed, so a copied complete list is accepted too. Layout version 1 (lmcodec before the
mixer version was a parameter) is values 0..4 and then 6..8 of this list: such datasets are
still read and written, with the newest mixer version, and version-1 ``compression_opts``
(values 0..4) are still accepted. Integer and floating-point datatypes of
the header's dtype table are byte-shuffled as such; every other datatype is coded as plain
bytes.

Only a Python process that has imported this module can read or write such datasets (other
HDF5 readers see an unavailable filter :data:`FILTER_ID`).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import logging
import os
import struct
from collections.abc import Sequence
from typing import Any
from pathlib import Path

import h5py
import numpy as np
from h5py import h5t, h5z

from .codec import FAST_PRESET, LMCodec
from .format import DTYPE_CODES, code_to_dtype, dtype_to_code
from .mixcoding import MIXER_VERSION

__all__ = ["FILTER_ID", "FILTER_NAME", "CD_VERSION", "LMFilter", "filter_args"]

FILTER_ID = 333
"""HDF5 filter id. It lies in 256..511, which HDF5 reserves for testing and for filters not
registered with The HDF Group: another unregistered filter may use the same id."""

FILTER_NAME = "lmcodec"
CD_VERSION = 2
"""Version of the cd_values layout in the module docstring (1 is still read and written)."""

_N_CD = {1: 8, 2: 9}
"""Number of cd_values per layout version."""
_N_USER = {1: 5, 2: 6}
"""Number of leading cd_values users may give, per layout version (the rest is recomputed)."""
_log = logging.getLogger(__name__)
_DEFAULT_FALLBACK_LEVEL = 3
_USER_DEFAULTS = (CD_VERSION, 0, 0, 0, _DEFAULT_FALLBACK_LEVEL, 0)
"""Defaults of cd_values 0..5, the ones users may give (model id 0: the default model; mixer
version 0: the newest)."""


# -- libhdf5 ----------------------------------------------------------------------------------


def _libhdf5_candidates() -> list[str]:
    """Paths of the libhdf5 h5py loaded: from /proc/self/maps (Linux), else next to h5py."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip()
                name = os.path.basename(path)
                if name.startswith("libhdf5") and not name.startswith("libhdf5_"):
                    paths.append(path)
    except OSError:
        pass
    root = Path(h5py.__file__).parent
    for pattern in ("libhdf5*", ".dylibs/libhdf5*", "../h5py.libs/libhdf5*", "hdf5*.dll"):
        paths += [p for p in glob.glob(str(root / pattern)) if "hdf5_hl" not in p]
    return list(dict.fromkeys(paths))


def _load_libhdf5() -> ctypes.CDLL:
    """h5py's own libhdf5 (same version as ``h5py.version.hdf5_version_tuple``)."""
    wanted = tuple(h5py.version.hdf5_version_tuple[:3])
    for path in _libhdf5_candidates():
        lib = ctypes.CDLL(path)
        major, minor, release = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
        if lib.H5get_libversion(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(release)):
            continue
        if (major.value, minor.value, release.value) == wanted:
            return lib
    raise ImportError(
        f"lmcodec.hdf5: cannot find the libhdf5 {'.'.join(map(str, wanted))} that h5py uses "
        f"(looked at {_libhdf5_candidates() or 'nothing'})"
    )


_lib = _load_libhdf5()
_hid = ctypes.c_int64
_lib.H5allocate_memory.argtypes = [ctypes.c_size_t, ctypes.c_bool]
_lib.H5allocate_memory.restype = ctypes.c_void_p
_lib.H5free_memory.argtypes = [ctypes.c_void_p]
_lib.H5free_memory.restype = ctypes.c_int
_lib.H5Pget_filter_by_id2.argtypes = [
    _hid, ctypes.c_int, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_size_t),
    ctypes.POINTER(ctypes.c_uint), ctypes.c_size_t, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint),
]
_lib.H5Pget_filter_by_id2.restype = ctypes.c_int
_lib.H5Pmodify_filter.argtypes = [
    _hid, ctypes.c_int, ctypes.c_uint, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint)
]
_lib.H5Pmodify_filter.restype = ctypes.c_int
for _name, _restype in (
    ("H5Tget_class", ctypes.c_int),
    ("H5Tget_size", ctypes.c_size_t),
    ("H5Tget_sign", ctypes.c_int),
    ("H5Tget_order", ctypes.c_int),
):
    getattr(_lib, _name).argtypes = [_hid]
    getattr(_lib, _name).restype = _restype


# -- parameters -------------------------------------------------------------------------------


def _model_id(model: str | None) -> bytes:
    """8-byte id of the installed model called ``model`` (``None``: the default model)."""
    from . import models

    return bytes.fromhex(models.model_info(model)["model_id"])


@functools.lru_cache(maxsize=64)
def _model_name(model_id: bytes) -> str:
    from . import models

    return models.model_info(model_id)["name"]


def _user_values(
    model: str | None, segment_length: int | None, fallback_level: int, mixer_version: int | None
) -> tuple[int, ...]:
    """cd_values 0..5 for these LMFilter parameters (validated by constructing an LMCodec)."""
    codec = LMCodec(model, None, segment_length, "auto", fallback_level, mixer_version=mixer_version)
    lo, hi = struct.unpack("<II", _model_id(codec.model))
    return (CD_VERSION, lo, hi, codec.segment_length or 0, codec.fallback_level & 0xFFFFFFFF,
            codec.mixer_version)


def _check_version(values: Sequence[int]) -> None:
    if values and values[0] not in _N_CD:
        raise ValueError(
            f"lmcodec filter parameters have layout version {values[0]}; "
            f"this lmcodec understands versions {sorted(_N_CD)}"
        )


@functools.lru_cache(maxsize=64)
def _encoder(values: tuple[int, ...]) -> LMCodec:
    """The codec that encodes for the complete cd_values ``values`` (layout version 1 or 2)."""
    _check_version(values)
    layout = values[0] if values else CD_VERSION
    if len(values) != _N_CD[layout]:
        raise ValueError(f"lmcodec filter layout version {layout} has {_N_CD[layout]} parameters, "
                         f"got {len(values)}")
    _, lo, hi, segment_length, level = values[:5]
    mixer_version = values[5] if layout >= 2 else 0
    code, flags = values[-2:]
    dtype = code_to_dtype(code, flags)
    return LMCodec(
        model=_model_name(struct.pack("<II", lo, hi)),
        dtype=None if dtype is None else dtype.str,
        segment_length=segment_length or None,
        fallback_level=level - (1 << 32) if level & 0x80000000 else level,
        mixer_version=mixer_version or None,
    )


_DECODER = LMCodec(model="unused-for-decoding")
"""Decoding reads the model id from each chunk header; the codec's model name plays no part."""


# -- callbacks --------------------------------------------------------------------------------


def _element_dtype(type_id: int) -> np.dtype | None:
    """numpy dtype of an HDF5 integer or float datatype that the chunk header's dtype table
    holds; ``None`` for any other datatype (coded as plain bytes)."""
    order = {h5t.ORDER_LE: "<", h5t.ORDER_BE: ">"}.get(_lib.H5Tget_order(type_id))
    cls = _lib.H5Tget_class(type_id)
    if cls == h5t.INTEGER:
        kind = "i" if _lib.H5Tget_sign(type_id) == h5t.SGN_2 else "u"
    elif cls == h5t.FLOAT:
        kind = "f"
    else:
        return None
    name = f"{kind}{_lib.H5Tget_size(type_id)}"
    if order is None or name not in DTYPE_CODES:
        return None
    return np.dtype(order + name)


def _set_local(dcpl_id: int, type_id: int, space_id: int) -> int:
    """Complete the dataset's cd_values from its datatype and make the filter mandatory."""
    try:
        flags = ctypes.c_uint()
        most = max(_N_CD.values())
        count = ctypes.c_size_t(most)
        values = (ctypes.c_uint * most)()
        if (
            _lib.H5Pget_filter_by_id2(
                dcpl_id, FILTER_ID, ctypes.byref(flags), ctypes.byref(count), values, 0, None, None
            )
            < 0
        ):
            raise RuntimeError("cannot read the lmcodec filter parameters")
        given = tuple(values[: min(count.value, most)])
        _check_version(given)
        layout = given[0] if given else CD_VERSION
        if count.value > _N_CD[layout]:
            raise ValueError(f"lmcodec filter layout version {layout} takes at most {_N_CD[layout]} "
                             f"parameters, got {count.value}")
        given = given[: _N_USER[layout]]  # the rest is recomputed
        user = (*_USER_DEFAULTS[:1], *given[1:], *_USER_DEFAULTS[max(1, len(given)) :])  # as layout 2
        if user[1] == user[2] == 0:  # the default model: resolve it now and store its id
            user = (user[0], *struct.unpack("<II", _model_id(None)), *user[3:])
        if user[5] == 0:  # the newest mixer version: resolve it now
            user = (*user[:5], MIXER_VERSION)
        code, dtype_flags = dtype_to_code(_element_dtype(type_id))
        complete = (*user, _lib.H5Tget_size(type_id), code, dtype_flags)
        _encoder(complete)  # validate (model installed, parameters in range) before any write
        n = _N_CD[CD_VERSION]
        if (
            _lib.H5Pmodify_filter(
                dcpl_id, FILTER_ID, h5z.FLAG_MANDATORY, n, (ctypes.c_uint * n)(*complete)
            )
            < 0
        ):
            raise RuntimeError("cannot store the lmcodec filter parameters")
        return 0
    except Exception as e:  # noqa: BLE001  (nothing may propagate into C)
        _log.error("lmcodec HDF5 filter setup failed: %s: %s", type(e).__name__, e)
        return -1


def _filter(flags: int, cd_nelmts: int, cd_values, nbytes: int, buf_size, buf) -> int:
    """HDF5 filter callback: code the ``nbytes`` at ``*buf``; returns the new size, 0 on error.

    The result replaces the contents of ``*buf`` when it fits in ``*buf_size`` bytes, else it
    goes to a new ``H5allocate_memory`` block and the old one is released with
    ``H5free_memory``. On error nothing is changed.
    """
    try:
        values = tuple(cd_values[:cd_nelmts])
        source = memoryview((ctypes.c_ubyte * nbytes).from_address(buf[0])).cast("B")
        if flags & h5z.FLAG_REVERSE:
            _check_version(values)
            result = _DECODER.decode(source)
        else:
            result = _encoder(values).encode(source)
        size = len(result)
        if size <= buf_size[0]:
            ctypes.memmove(buf[0], result, size)
            return size
        new = _lib.H5allocate_memory(size, False)
        if not new:
            raise MemoryError(f"H5allocate_memory could not allocate {size} bytes")
        ctypes.memmove(new, result, size)
        _lib.H5free_memory(buf[0])
        buf[0] = new
        buf_size[0] = size
        return size
    except Exception as e:  # noqa: BLE001  (nothing may propagate into C)
        _log.error("lmcodec HDF5 filter failed: %s: %s", type(e).__name__, e)
        return 0


_CAN_APPLY = ctypes.CFUNCTYPE(ctypes.c_int, _hid, _hid, _hid)
_SET_LOCAL = ctypes.CFUNCTYPE(ctypes.c_int, _hid, _hid, _hid)
_FILTER = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.c_uint,
    ctypes.c_size_t,
    ctypes.POINTER(ctypes.c_uint),
    ctypes.c_size_t,
    ctypes.POINTER(ctypes.c_size_t),
    ctypes.POINTER(ctypes.c_void_p),
)


class _H5ZClass2(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_int),
        ("id", ctypes.c_int),
        ("encoder_present", ctypes.c_uint),
        ("decoder_present", ctypes.c_uint),
        ("name", ctypes.c_char_p),
        ("can_apply", _CAN_APPLY),
        ("set_local", _SET_LOCAL),
        ("filter", _FILTER),
    ]


_CLASS = _H5ZClass2(
    h5z.CLASS_T_VERS,
    FILTER_ID,
    1,
    1,
    FILTER_NAME.encode(),
    _CAN_APPLY(),
    _SET_LOCAL(_set_local),
    _FILTER(_filter),
)
# H5Zregister copies the struct but keeps calling the ctypes thunks it points to, possibly while
# the interpreter shuts down (a file closed by garbage collection flushes its chunk cache) after
# this module's globals are cleared: one reference that is never released keeps them alive.
ctypes.pythonapi.Py_IncRef(ctypes.py_object(_CLASS))
h5z.register_filter(ctypes.addressof(_CLASS))


# -- user API ---------------------------------------------------------------------------------


class LMFilter(h5py.filters.FilterRefBase):
    """``compression=LMFilter(...)`` for ``h5py.Group.create_dataset`` (hdf5plugin style).

    Parameters are those of :class:`lmcodec.LMCodec` that matter to HDF5: ``model`` (name of an
    installed model; ``None``: the default model), ``segment_length`` (bytes, ``None``:
    LMCodec's default, :func:`lmcodec.codec.default_segment_length`), ``fallback_level`` (zstd level) and ``mixer_version`` (``None``:
    the newest). The element dtype comes from the dataset. Instances also work as ``**kwargs``
    (``compression``, ``compression_opts``).
    """

    filter_id = FILTER_ID

    def __init__(
        self,
        model: str | None = None,
        segment_length: int | None = None,
        fallback_level: int = _DEFAULT_FALLBACK_LEVEL,
        mixer_version: int | None = None,
    ):
        self.filter_options = _user_values(model, segment_length, fallback_level, mixer_version)

    @classmethod
    def fast(cls, **overrides: Any) -> LMFilter:
        """The fast preset of :meth:`lmcodec.LMCodec.fast` (:data:`lmcodec.codec.FAST_PRESET`)."""
        return cls(**{**FAST_PRESET, **overrides})


def filter_args(
    model: str | None = None,
    segment_length: int | None = None,
    fallback_level: int = _DEFAULT_FALLBACK_LEVEL,
    mixer_version: int | None = None,
) -> dict:
    """``create_dataset`` keyword arguments (``compression``, ``compression_opts``) for lmcodec."""
    return dict(LMFilter(model, segment_length, fallback_level, mixer_version))
