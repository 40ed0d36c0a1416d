"""The codecs that ``lmcodec bench`` compares: LMCodec per model and the classical baselines.

Every codec works on a list of chunks (numpy arrays of one dataset, all of one dtype and rank)
and returns one encoded ``bytes`` per chunk; decoding gets the encoded chunks and the original
chunks as templates (shape and dtype only: a codec may not read their values) and returns
anything whose bytes can be compared with the original's (``bytes`` or an array).

Baselines (each chunk coded on its own, like a Zarr chunk):

======================  ====================================================================
``gzip-9``              :func:`gzip.compress` level 9 (the paper's "gzip"), ``mtime=0``
``zstd-19``             zstd level 19 (``numcodecs.Zstd``)
``zstd-19+shuffle``     numcodecs byte ``Shuffle`` then zstd 19; elements wider than one byte
``xz-9``                :func:`lzma.compress` preset 9, xz container (the paper's "LZMA2")
``bzip2-9``             :func:`bz2.compress` level 9
``blosc-zstd-9``        ``numcodecs.Blosc(cname="zstd", clevel=9, shuffle=SHUFFLE)``
``pcodec``              ``pcodec`` standalone format, default level; 16/32/64-bit numbers
``fpzip``               ``fpzip`` lossless (precision 0); float32/float64
``png``                 Pillow PNG, ``optimize=True``; kind ``image`` (uint8, 1/3/4 channels)
``flac``                libFLAC through ``soundfile``, compression level 1.0 (= ``flac -8``);
                        kind ``audio``: int16 as PCM_16, uint8 (the paper's 8-bit audio) as
                        PCM_S8 after removing the +128 bias
======================  ====================================================================

A baseline whose package is missing is reported as skipped with the reason (install the
``bench`` extra: ``pip install "lmcodec[bench]"``).

LMCodec (:class:`LMBenchCodec`): ``lmcodec/<model>`` is the default codec ``LMCodec(model)``
(mode ``lm_mix``, format version 4); ``lmcodec/<model>/lm-only`` is ``LMCodec(model, mix=False)``
(mode ``lm``, the model alone, format version 1). Both store a chunk as zstd or raw where that is
smaller. The record length the ``lm_mix`` mixer gets is one row of the chunk (see
:func:`record_length`).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ModelNotFoundError
from .format import HEADER_SIZE, Mode, parse_header

__all__ = [
    "BenchCodec",
    "Baseline",
    "LMBenchCodec",
    "baseline_codecs",
    "record_length",
    "lm_mix_planes",
]

Applies = Callable[[str, np.dtype, tuple[int, ...]], bool]
"""``applies(kind, dtype, chunk_shape)``: whether a codec can code chunks like this."""

class BenchCodec:
    """Interface of a benchmarked codec (see the module docstring)."""

    name: str
    description: str
    model_bytes: int | None = None  # bytes of the model a decoder needs (LM codecs only)

    def unavailable(self) -> str | None:
        """Why this codec cannot run here (a package is missing), or ``None``."""
        return None

    def applies(self, kind: str, dtype: np.dtype, chunk_shape: tuple[int, ...]) -> bool:
        raise NotImplementedError

    def warm_up(self, chunk: np.ndarray) -> None:
        """Load whatever the first call would load (models, sessions), outside the timings."""

    def encode(self, chunks: Sequence[np.ndarray]) -> list[bytes]:
        raise NotImplementedError

    def decode(self, encoded: Sequence[bytes], like: Sequence[np.ndarray]) -> list:
        raise NotImplementedError

    def modes(self, encoded: Sequence[bytes]) -> dict[str, int] | None:
        """How many chunks were stored in each mode (LMCodec only), else ``None``."""
        return None

    def planes(self, encoded: Sequence[bytes], like: Sequence[np.ndarray] = ()) -> dict | None:
        """Bytes spent per byte plane of ``encoded`` (the chunks ``like``; LMCodec in mode
        ``lm_mix`` only, see :func:`lm_mix_planes`), else ``None``."""
        return None


@dataclass
class Baseline(BenchCodec):
    """A classical codec given by per-chunk functions."""

    name: str
    description: str
    applies_fn: Applies
    encode_one: Callable[[np.ndarray], bytes]
    decode_one: Callable[[bytes, np.ndarray], object]
    requires: str | None = None  # importable module the codec needs

    def unavailable(self) -> str | None:
        if self.requires is None:
            return None
        import importlib.util

        if importlib.util.find_spec(self.requires) is None:
            return f"Python package {self.requires!r} is not installed (pip install \"lmcodec[bench]\")"
        return None

    def applies(self, kind: str, dtype: np.dtype, chunk_shape: tuple[int, ...]) -> bool:
        return self.applies_fn(kind, dtype, chunk_shape)

    def encode(self, chunks: Sequence[np.ndarray]) -> list[bytes]:
        return [self.encode_one(c) for c in chunks]

    def decode(self, encoded: Sequence[bytes], like: Sequence[np.ndarray]) -> list:
        return [self.decode_one(e, t) for e, t in zip(encoded, like, strict=True)]


class LMBenchCodec(BenchCodec):
    """:class:`lmcodec.LMCodec` with one model; chunks are coded in one batch call each way.

    ``mix=True`` is the default codec (mode ``lm_mix``), named ``lmcodec/<model>``, or with an
    older ``mixer_version`` ``lmcodec/<model>/mixer-v<N>`` (e.g. the fast preset,
    :meth:`lmcodec.LMCodec.fast`); ``mix=False`` is the model alone (mode ``lm``), named
    ``lmcodec/<model>/lm-only``.
    ``model_bytes`` is what the adjusted rate adds: the size of the model's integer weights file
    (``weights.npz``); :meth:`installed` looks it up with the parameter count and model id.
    ``default``: whether ``model`` is the default model (the report's per-plane table and
    summary are about the default model's default codec).
    """

    def __init__(self, model: str, model_bytes: int, n_parameters: int | None = None, model_id: str = "",
                 mix: bool = True, default: bool = False, mixer_version: int | None = None):
        self.model = model
        self.mix = mix
        self.default = default
        self.mixer_version = mixer_version
        if mix and mixer_version is not None:
            self.name = f"lmcodec/{model}/mixer-v{mixer_version}"
            self.description = (f"LMCodec(model={model!r}, mixer_version={mixer_version}): mode lm_mix with "
                                f"the rules of mixer version {mixer_version} (format version "
                                f"{mixer_version + 1}), or zstd/raw per chunk where smaller")
        elif mix:
            self.name = f"lmcodec/{model}"
            self.description = (f"LMCodec default, model {model}: mode lm_mix (model mixed with adaptive "
                                "statistics in 16 KiB streams, per-chunk element transform), or zstd/raw "
                                "per chunk where smaller")
        else:
            self.name = f"lmcodec/{model}/lm-only"
            self.description = (f"LMCodec mix=False, model {model}: mode lm (the model alone, format "
                                "version 1), or zstd/raw per chunk where smaller")
        self.model_bytes = model_bytes
        self.n_parameters = n_parameters
        self.model_id = model_id

    @classmethod
    def installed(cls, model: str, mix: bool = True, default: bool | None = None,
                  mixer_version: int | None = None) -> LMBenchCodec:
        """The codec for an installed model (ModelNotFoundError if there is none);
        ``default=None`` asks :func:`lmcodec.models.default_model_name`; ``mixer_version=None``:
        the newest."""
        from . import models

        info = models.model_info(model)
        if default is None:
            try:
                default = model == models.default_model_name()
            except ModelNotFoundError:
                default = False
        return cls(model, models.model_weights_bytes(model), info.get("n_parameters"), info["model_id"],
                   mix=mix, default=default, mixer_version=mixer_version)

    def applies(self, kind: str, dtype: np.dtype, chunk_shape: tuple[int, ...]) -> bool:
        return True

    def _codec(self, dtype: np.dtype):
        from .codec import LMCodec

        return LMCodec(model=self.model, dtype=np.dtype(dtype).str, mix=self.mix, mixer_version=self.mixer_version)

    def warm_up(self, chunk: np.ndarray) -> None:
        codec = self._codec(chunk.dtype)
        codec.decode(codec.encode(np.ascontiguousarray(chunk.reshape(-1)[:64])))

    def encode(self, chunks: Sequence[np.ndarray]) -> list[bytes]:
        if not chunks:
            return []
        return self._codec(chunks[0].dtype).encode_batch(
            list(chunks), record_lengths=[record_length(c) for c in chunks])

    def decode(self, encoded: Sequence[bytes], like: Sequence[np.ndarray]) -> list:
        if not encoded:
            return []
        return self._codec(like[0].dtype).decode_batch(list(encoded))

    def modes(self, encoded: Sequence[bytes]) -> dict[str, int]:
        counts = {m.name.lower(): 0 for m in Mode}
        for e in encoded:
            header = parse_header(e[:HEADER_SIZE], body_length=len(e) - HEADER_SIZE)
            counts[header.mode.name.lower()] += 1
        return counts

    def planes(self, encoded: Sequence[bytes], like: Sequence[np.ndarray] = ()) -> dict | None:
        itemsize = like[0].dtype.itemsize if len(like) else 1
        return lm_mix_planes(encoded, itemsize) if self.mix else None


def record_length(chunk: np.ndarray) -> int:
    """The record length the harness gives ``LMCodec`` for ``chunk`` (bytes of one plane per
    row): :func:`lmcodec.codec.record_length` of its shape, passed explicitly because the
    harness hands ``encode_batch`` the chunks it timed, whatever their memory layout."""
    from .codec import record_length as codec_record_length
    from .preprocess import plane_itemsize

    return codec_record_length(chunk.shape, chunk.dtype.itemsize, plane_itemsize(chunk.dtype))


def lm_mix_planes(encoded: Sequence[bytes], itemsize: int = 1) -> dict:
    """Where the bytes of LMCodec chunks go, per byte plane (JSON-ready).

    For every chunk stored in mode ``lm_mix``, :func:`lmcodec.mixcoding.body_report` gives the
    body bytes each plane's streams take (word count varints, final states and words, or the raw
    stream bytes); they add up, per plane index, to ``coded_bytes`` next to the plane's raw
    ``bytes``. ``overhead_bytes`` is the rest of those chunks: 36-byte headers and each body's
    shared prefix (mixer version, transform, varints, raw bitmap). Chunks stored ``zstd`` or
    ``raw`` (a zstd frame of all planes together cannot be split by plane) and ``lm`` chunks are
    counted apart, whole, in ``other``. ``max_chunk_plane_bits_per_byte`` is the largest
    bits/byte of one plane of one ``lm_mix`` chunk; ``transforms`` counts the element transform
    of the ``lm_mix`` chunks (``none`` / ``delta`` / ``up`` / ``delta_zz`` / ``up_zz``) and
    ``decimal`` those coded with a decimal step (:mod:`lmcodec.decimals`). With ``itemsize`` > 1 (the data's
    element size), ``lm_mix`` chunks the encoder coded unshuffled (no dtype in the header: one
    plane of whole elements, not a byte plane) are counted apart, whole, in ``plain``.
    """
    from .mixcoding import body_report
    from .preprocess import plane_layout
    from .transforms import Transform

    planes: dict[int, dict] = {}
    overhead = lm_chunks = 0
    other = {"chunks": 0, "raw_bytes": 0, "compressed_bytes": 0}
    plain = dict(other)
    transforms = {t.name.lower(): 0 for t in Transform}
    decimal = 0
    worst = None
    for e in encoded:
        header = parse_header(e[:HEADER_SIZE], body_length=len(e) - HEADER_SIZE)
        if header.mode != Mode.LM_MIX:
            other["chunks"] += 1
            other["raw_bytes"] += header.raw_length
            other["compressed_bytes"] += len(e)
            continue
        if itemsize > 1 and header.dtype is None:
            plain["chunks"] += 1
            plain["raw_bytes"] += header.raw_length
            plain["compressed_bytes"] += len(e)
            continue
        body = bytes(e[HEADER_SIZE:])
        layout = plane_layout(header.raw_length, header.dtype)
        report = body_report(body, layout, header.segment_length, header.version, header.dtype)
        params, costs = report.params, report.plane_costs
        lm_chunks += 1
        overhead += len(e) - sum(costs)
        transforms[Transform(params.transform).name.lower()] += 1
        decimal += params.decimal is not None
        for p, ((length, kind), cost) in enumerate(zip(layout, costs)):
            entry = planes.setdefault(p, {"plane": p, "kind": int(kind), "bytes": 0, "coded_bytes": 0})
            entry["bytes"] += int(length)
            entry["coded_bytes"] += int(cost)
            bpb = 8 * cost / length
            worst = bpb if worst is None else max(worst, bpb)
    return {
        "lm_mix_chunks": lm_chunks,
        "planes": [planes[p] for p in sorted(planes)],
        "overhead_bytes": overhead,
        "other": other,
        "plain": plain,
        "transforms": transforms,
        "decimal": decimal,
        "max_chunk_plane_bits_per_byte": worst,
    }


# -- baselines --------------------------------------------------------------------------------


def _raw(chunk: np.ndarray) -> bytes:
    return np.ascontiguousarray(chunk).tobytes()


def _any(kind: str, dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    return True


def _multibyte(kind: str, dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    return dtype.itemsize > 1


def _pcodec_dtype(kind: str, dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    return dtype.kind in "iuf" and dtype.itemsize in (2, 4, 8)


def _float(kind: str, dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    return dtype.kind == "f" and dtype.itemsize in (4, 8)


def _image(kind: str, dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    channels_ok = len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4))
    return kind == "image" and dtype == np.uint8 and channels_ok


def _audio(kind: str, dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    return kind == "audio" and dtype in (np.dtype(np.int16), np.dtype(np.uint8)) and len(shape) in (1, 2)


def _zstd(level: int):
    from numcodecs import Zstd

    return Zstd(level=level)


def _zstd_shuffle_encode(chunk: np.ndarray) -> bytes:
    from numcodecs import Shuffle

    shuffled = Shuffle(elementsize=chunk.dtype.itemsize).encode(np.ascontiguousarray(chunk))
    return bytes(_zstd(19).encode(shuffled))


def _zstd_shuffle_decode(enc: bytes, like: np.ndarray) -> bytes:
    from numcodecs import Shuffle

    return bytes(Shuffle(elementsize=like.dtype.itemsize).decode(_zstd(19).decode(enc)))


def _blosc():
    from numcodecs import Blosc

    return Blosc(cname="zstd", clevel=9, shuffle=Blosc.SHUFFLE)


def _pcodec_encode(chunk: np.ndarray) -> bytes:
    from pcodec import ChunkConfig, standalone

    return bytes(standalone.simple_compress(np.ascontiguousarray(chunk).reshape(-1), ChunkConfig()))


def _pcodec_decode(enc: bytes, like: np.ndarray) -> np.ndarray:
    from pcodec import standalone

    return standalone.simple_decompress(enc)


def _fpzip_encode(chunk: np.ndarray) -> bytes:
    import fpzip

    return bytes(fpzip.compress(np.ascontiguousarray(chunk).reshape(-1), precision=0))


def _fpzip_decode(enc: bytes, like: np.ndarray) -> np.ndarray:
    import fpzip

    return fpzip.decompress(enc)


def _png_encode(chunk: np.ndarray) -> bytes:
    from PIL import Image

    a = chunk[:, :, 0] if chunk.ndim == 3 and chunk.shape[2] == 1 else chunk
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _png_decode(enc: bytes, like: np.ndarray) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(enc)) as im:
        return np.asarray(im)


_FLAC_RATE = 16000  # Hz; stored as metadata only, it does not change the coding


def _flac_encode(chunk: np.ndarray) -> bytes:
    import soundfile

    if chunk.dtype == np.uint8:  # the paper's 8-bit audio: value = signed sample + 128
        pcm, subtype = (chunk.astype(np.int16) - 128) << 8, "PCM_S8"
    else:
        pcm, subtype = chunk, "PCM_16"
    buf = io.BytesIO()
    soundfile.write(buf, np.ascontiguousarray(pcm), _FLAC_RATE, format="FLAC", subtype=subtype,
                    compression_level=1.0)
    return buf.getvalue()


def _flac_decode(enc: bytes, like: np.ndarray) -> np.ndarray:
    import soundfile

    pcm, _ = soundfile.read(io.BytesIO(enc), dtype="int16", always_2d=like.ndim == 2)
    if like.dtype == np.uint8:
        return ((pcm >> 8) + 128).astype(np.uint8)
    return pcm


def baseline_codecs() -> list[Baseline]:
    """Every baseline, in report order (see the module docstring)."""
    zstd19 = _zstd(19)
    blosc = _blosc()
    return [
        Baseline("gzip-9", "gzip level 9", _any,
                 lambda c: gzip.compress(_raw(c), 9, mtime=0), lambda e, t: gzip.decompress(e)),
        Baseline("zstd-19", "zstd level 19", _any,
                 lambda c: bytes(zstd19.encode(np.ascontiguousarray(c))), lambda e, t: bytes(zstd19.decode(e))),
        Baseline("zstd-19+shuffle", "byte shuffle + zstd level 19", _multibyte,
                 _zstd_shuffle_encode, _zstd_shuffle_decode),
        Baseline("xz-9", "xz (LZMA2) preset 9", _any,
                 lambda c: lzma.compress(_raw(c), preset=9), lambda e, t: lzma.decompress(e)),
        Baseline("bzip2-9", "bzip2 level 9", _any,
                 lambda c: bz2.compress(_raw(c), 9), lambda e, t: bz2.decompress(e)),
        Baseline("blosc-zstd-9", "Blosc zstd level 9 + byte shuffle", _any,
                 lambda c: bytes(blosc.encode(np.ascontiguousarray(c))), lambda e, t: bytes(blosc.decode(e))),
        Baseline("pcodec", "pcodec (standalone, default level)", _pcodec_dtype,
                 _pcodec_encode, _pcodec_decode, requires="pcodec"),
        Baseline("fpzip", "fpzip lossless", _float, _fpzip_encode, _fpzip_decode, requires="fpzip"),
        Baseline("png", "PNG (Pillow, optimize)", _image, _png_encode, _png_decode, requires="PIL"),
        Baseline("flac", "FLAC level 8 (soundfile/libsndfile)", _audio, _flac_encode, _flac_decode,
                 requires="soundfile"),
    ]
