"""``LMCodec``: the numcodecs codec (``codec_id = "lmcodec"``).

Each encoded chunk is a 36-byte header (:mod:`lmcodec.format`) followed by the smallest of three
bodies: the raw bytes, a zstd frame of the byte planes (the fallback) or a model body. The model
body is, by default, ``lm_mix`` (:mod:`lmcodec.mixcoding`: long streams, the model's tables mixed
with statistics adapted on the chunk itself); with ``mix=False`` it is the plain ``lm`` body of
format version 1 (:mod:`lmcodec.lmcoding`: independent segments, the model's tables as they are).
An encoded chunk is never longer than the raw chunk plus :data:`~lmcodec.format.HEADER_SIZE`.

The model is resolved lazily through :mod:`lmcodec.models` (cached there) and never stored on the
codec, so codec objects are cheap, picklable and compare equal by configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray
from numcodecs.registry import register_codec

from .errors import CorruptChunkError, LMCodecError
from .format import (
    HEADER_SIZE,
    MAX_RAW_LENGTH,
    Header,
    Mode,
    crc32c,
    pack_header,
    parse_header,
    zstd_compress,
    zstd_decompress,
)
from .decimals import from_integers, to_integers
from .mixcoding import (
    DEFAULT_STREAM_LENGTH,
    FORMAT_OF_MIXER,
    MAX_RECORD_LENGTH,
    MAX_STREAM_LENGTH,
    MIXER_TRANSFORMS,
    MIXER_VERSION,
    StreamParams,
    written_format,
)
from .preprocess import join_planes, plane_itemsize, plane_layout, shuffle_dtype, split_planes, unshuffle
from .transforms import Coding, Transform, apply_transform, choose_coding, invert_transform

__all__ = ["LMCodec", "FAST_PRESET", "MIX_SEGMENT_LENGTH", "default_segment_length", "record_length"]

FAST_PRESET: dict[str, Any] = {"model": "lm-fast-v1", "mixer_version": 1}
"""``LMCodec.fast()``: the shipped model made for speed (128-byte context, width 64) and mixer
version 1 (no shared statistics, no order-4/6 contexts): on the 2-core CPU it encoded 1 MiB chunks
at 293-346 KB/s and decoded them at 104-128 KB/s in five runs (docs/performance.md: speed;
docs/benchmarks.md: its ratio against the default)."""


MIX_SEGMENT_LENGTH = 512
"""Default segment length in mode ``lm_mix`` (the model's context length when that is shorter).
The mixer's own context models and match model carry what lies further back in a stream, so a
longer model context buys little there, while every decode step reads the whole KV cache of its
segment so far and encoding attends over it: lm-small-v1 with 512 instead of 1024 costs 0.05 %
more bytes over every corpus kind and encodes 1.3-1.4x and decodes 1.2-1.4x faster
(``benchmarks/stream_length.py --segment-lengths``, docs/performance.md *Segment length*). Mode
``lm`` (the model alone) keeps the model's whole context."""


def default_segment_length(context_length: int, mix: bool) -> int:
    """The segment length ``LMCodec(segment_length=None)`` codes with, for a model of
    ``context_length`` bytes: :data:`MIX_SEGMENT_LENGTH` at most in mode ``lm_mix`` (``mix``),
    the whole context in mode ``lm``."""
    return min(MIX_SEGMENT_LENGTH, context_length) if mix else context_length

# -- model resolution: the only places that touch lmcodec.models (patched in tests) -------------


def _default_model_name() -> str:
    from . import models

    resolve = getattr(models, "default_model_name", None)
    return resolve() if resolve is not None else models.DEFAULT_MODEL


def _load_model(name: str | None, device: str):
    from . import models

    return models.load_model(name, device=device)


def _load_model_by_id(model_id: bytes, device: str):
    from . import models

    return models.load_model_by_id(model_id, device=device)


# -----------------------------------------------------------------------------------------------


def record_length(shape: Sequence[int], itemsize: int, plane_itemsize: int) -> int:
    """The ``lm_mix`` record length (bytes of a plane between vertically adjacent elements) of
    a C-ordered chunk of ``shape`` with elements of ``itemsize`` bytes coded in planes of
    ``plane_itemsize``-byte elements (1 for plain bytes); 0 when there is none.

    Leading axes of length 1 are dropped; the record is then one step along the first axis
    (the product of all later axes: a row of a 2-D array, a row of pixels with their channels,
    one grid of a time series of grids), or along a later axis when that is longer than
    :data:`~lmcodec.mixcoding.MAX_RECORD_LENGTH`. Only compression depends on it.
    """
    dims = list(shape)
    while len(dims) > 1 and dims[0] == 1:
        dims.pop(0)
    for k in range(1, len(dims)):
        record = int(np.prod(dims[k:], dtype=np.int64)) * itemsize // plane_itemsize
        if 2 <= record <= MAX_RECORD_LENGTH:
            return record
    return 0


def _normalise_dtype(dtype) -> str | None:
    if dtype is None or (isinstance(dtype, str) and dtype == "auto"):
        return None
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise ValueError("object dtypes cannot be byte-shuffled")
    return dt.str


class LMCodec(Codec):
    """Lossless codec with an integer-exact byte-level Transformer and rANS coding.

    Parameters
    ----------
    model : str, optional
        Name of the installed model used for encoding; ``None`` means the default model
        (the configuration records the resolved name). Decoding always uses the model whose
        id is stored in each chunk, whatever this parameter says.
    dtype : str, optional
        numpy dtype of the elements, for the byte shuffle (like Blosc's ``typesize``).
        ``None`` (or ``"auto"``) takes it from the array given to :meth:`encode`; bytes-like
        input without a numeric format is coded as plain bytes.
    segment_length : int, optional
        Bytes per coded segment (one model context; in mode ``lm`` also one rANS lane);
        ``None`` means the model's context length, capped at :data:`MIX_SEGMENT_LENGTH` (512)
        when ``mix`` is true. Longer segments compress better, shorter ones are faster (mode
        ``lm``: more parallel lanes; both modes: less KV cache per decode step).
    device : str
        Where the model runs: ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :mod:`lmcodec.models`).
    fallback_level : int
        zstd level of the fallback body (stored instead of the LM body when smaller).
    mix : bool
        ``True`` (default): code with the model mixed with adaptive statistics (mode
        ``lm_mix``, format version 4). ``False``: the model alone (mode ``lm``, format
        version 1, readable by every lmcodec release).
    stream_length : int
        ``lm_mix`` only: bytes per stream (one mixer lane and one rANS lane), rounded down to
        a whole number of segments (at least one). The streams of a plane share their adaptive
        statistics but advance in lockstep, so longer streams let a stream see more of its own
        plane's earlier bytes; more streams decode in more parallel lanes. Default 16384.
    mixer_version : int, optional
        ``lm_mix`` only: the mixer rules to write (docs/format.md §4.4), ``None`` meaning the
        newest (3, format version 4); the configuration records the resolved number, so an
        array keeps the version it was created with. Older versions are lighter: version 1
        (format version 2: no shared statistics, no order-4/6 contexts) mixes faster and
        compresses less (docs/performance.md and docs/benchmarks.md measure both; see
        :meth:`fast`). Decoding reads every version whatever this says.

    In mode ``lm_mix`` the encoder may code a chunk of multi-byte elements unshuffled, as plain
    bytes, when that looks smaller (:func:`lmcodec.transforms.choose_coding`); the chunk header
    says which layout was used, so decoding needs no option.

    The record length the mixer uses (e.g. an image row) is taken from the input's shape:
    the length of the last axis of a numpy array with two or more dimensions (see
    :meth:`encode_batch`); otherwise the mixer detects it.

    Notes
    -----
    ``encode`` accepts anything numcodecs codecs accept (bytes, bytearray, memoryview, numpy
    arrays) and codes the bytes in memory order, so a C- or F-contiguous array is coded as
    laid out. A *non-contiguous* numpy array (numcodecs codecs refuse those) is first copied
    with ``np.ascontiguousarray``, so its bytes are coded in C order.
    """

    codec_id = "lmcodec"

    def __init__(
        self,
        model: str | None = None,
        dtype: str | None = None,
        segment_length: int | None = None,
        device: str = "auto",
        fallback_level: int = 3,
        mix: bool = True,
        stream_length: int = DEFAULT_STREAM_LENGTH,
        mixer_version: int | None = None,
    ):
        if model is None:
            model = _default_model_name()
        if not isinstance(model, str) or not model:
            raise TypeError(f"model must be a model name (str), got {model!r}")
        if segment_length is not None:
            if isinstance(segment_length, bool) or int(segment_length) != segment_length:
                raise TypeError(f"segment_length must be an int, got {segment_length!r}")
            segment_length = int(segment_length)
            if not 1 <= segment_length < 1 << 32:
                raise ValueError(f"segment_length must be positive, got {segment_length}")
        if not isinstance(device, str):
            raise TypeError(f"device must be a str, got {device!r}")
        if isinstance(fallback_level, bool) or int(fallback_level) != fallback_level:
            raise TypeError(f"fallback_level must be an int, got {fallback_level!r}")
        self.model = model
        self.dtype = _normalise_dtype(dtype)
        self.segment_length = segment_length
        self.device = device
        self.fallback_level = int(fallback_level)
        if not isinstance(mix, bool):
            raise TypeError(f"mix must be a bool, got {mix!r}")
        if isinstance(stream_length, bool) or int(stream_length) != stream_length:
            raise TypeError(f"stream_length must be an int, got {stream_length!r}")
        if not 1 <= int(stream_length) <= MAX_STREAM_LENGTH:
            raise ValueError(f"stream_length must be in 1..{MAX_STREAM_LENGTH}, got {stream_length}")
        if mixer_version is None:
            mixer_version = MIXER_VERSION
        if isinstance(mixer_version, bool) or not isinstance(mixer_version, int):
            raise TypeError(f"mixer_version must be an int or None, got {mixer_version!r}")
        if mixer_version not in FORMAT_OF_MIXER:
            raise ValueError(f"mixer_version must be one of {sorted(FORMAT_OF_MIXER)}, got {mixer_version}")
        self.mix = mix
        self.stream_length = int(stream_length)
        self.mixer_version = mixer_version

    @classmethod
    def fast(cls, **overrides: Any) -> LMCodec:
        """The fast preset: ``LMCodec(**FAST_PRESET, **overrides)`` (:data:`FAST_PRESET`). Its
        configuration names the model and mixer version, so an array created with it keeps
        them."""
        return cls(**{**FAST_PRESET, **overrides})

    # -- numcodecs protocol ----------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {
            "id": self.codec_id,
            "model": self.model,
            "dtype": self.dtype,
            "segment_length": self.segment_length,
            "device": self.device,
            "fallback_level": self.fallback_level,
            "mix": self.mix,
            "stream_length": self.stream_length,
            "mixer_version": self.mixer_version,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("id", None)
        return cls(**config)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "id")
        return f"{type(self).__name__}({params})"

    def __hash__(self):
        return hash(tuple(sorted(self.get_config().items())))

    def encode(self, buf) -> bytes:
        """Encode one chunk; returns the header and body as ``bytes``."""
        return self.encode_batch([buf])[0]

    def decode(self, buf, out=None):
        """Decode one chunk; returns ``bytes``, or ``out`` filled with the decoded bytes.

        ``out`` must be a writeable contiguous buffer (ndarray, bytearray, ...) of exactly the
        decoded size, else ``ValueError``.
        """
        return self.decode_batch([buf], None if out is None else [out])[0]

    # -- batches ---------------------------------------------------------------------------

    def _prepare(self, buf) -> tuple[np.ndarray, np.dtype | None, int]:
        """``(raw bytes as uint8 1-D, shuffle dtype, record length)`` of one input chunk.

        The record length (bytes of one plane per row of the array, for the ``lm_mix`` mixer) is
        the last axis (first axis for an F-ordered array) of a numpy array with two or more
        dimensions, else 0 (unknown).
        """
        if isinstance(buf, np.ndarray) and not (buf.flags.c_contiguous or buf.flags.f_contiguous):
            buf = np.ascontiguousarray(buf)
        arr = ensure_contiguous_ndarray(buf)
        if self.dtype is not None:
            dt = np.dtype(self.dtype)
        elif arr.dtype == np.uint8 and not isinstance(buf, np.ndarray):
            dt = None  # plain bytes-like input
        else:
            dt = arr.dtype
        record = 0
        if isinstance(buf, np.ndarray):
            shape = buf.shape[::-1] if (buf.flags.f_contiguous and not buf.flags.c_contiguous) else buf.shape
            record = record_length(shape, buf.dtype.itemsize, plane_itemsize(dt))
        data = arr.view(np.uint8).reshape(-1)
        if data.shape[0] > MAX_RAW_LENGTH:
            raise ValueError(f"chunk of {data.shape[0]} bytes exceeds the {MAX_RAW_LENGTH} cap")
        return data, shuffle_dtype(dt), record

    def encode_batch(self, bufs: Sequence[Any], record_lengths: Sequence[int] | None = None) -> list[bytes]:
        """Encode many chunks at once; the result equals ``[self.encode(b) for b in bufs]``.

        The model segments of all chunks are coded in one pooled call, which is what makes the
        model run efficiently. ``record_lengths`` (one per chunk, bytes per row of a plane, 0 =
        unknown) overrides the record length taken from each input's shape, e.g. for storage
        layers that pass flat bytes but know the chunk's shape (:mod:`lmcodec.zarr3`).
        """
        prepared = [self._prepare(b) for b in bufs]
        if record_lengths is not None:
            if len(record_lengths) != len(bufs):
                raise ValueError(f"{len(record_lengths)} record lengths for {len(bufs)} chunks")
            prepared = [
                (d, dt, int(r) if 2 <= int(r) <= MAX_RECORD_LENGTH else 0)
                for (d, dt, _), r in zip(prepared, record_lengths)
            ]
        to_code = [i for i, (data, _, _) in enumerate(prepared) if data.shape[0]]
        planes = {i: split_planes(*prepared[i][:2]) for i in to_code}
        lm_bodies: dict[int, bytes] = {}
        codings: dict[int, Coding] = {}  # lm_mix layout per chunk (its dtype goes in the header)
        model_id = bytes(8)
        segment_length = 0
        lm_mode = Mode.LM_MIX if self.mix else Mode.LM
        if to_code:
            model = _load_model(self.model, self.device)
            model_id = bytes(model.model_id)
            segment_length = self.segment_length or default_segment_length(int(model.context_length), self.mix)
            if segment_length > model.context_length:
                raise ValueError(
                    f"segment_length {segment_length} exceeds the context length "
                    f"{model.context_length} of model {self.model!r}"
                )
            if self.mix:
                from .mixcoding import encode_chunks

                per_stream = max(1, self.stream_length // segment_length)
                params, chunks = [], []
                for i in to_code:
                    data, dt, record = prepared[i]
                    coding = choose_coding(data, dt, record, MAX_RECORD_LENGTH, MIXER_TRANSFORMS[self.mixer_version])
                    codings[i] = coding
                    params.append(StreamParams(per_stream, coding.record, int(coding.transform), coding.decimal))
                    if coding.decimal is not None:
                        data = to_integers(data, coding.decimal.dtype, coding.decimal.exponent)[0]
                    transformed = apply_transform(data, coding.dtype, coding.transform, coding.record)
                    chunks.append(split_planes(transformed, coding.dtype))
                bodies = encode_chunks(model, chunks, segment_length, params, mixer_version=self.mixer_version)
            else:
                from .lmcoding import encode_planes

                bodies = encode_planes(model, [planes[i] for i in to_code], segment_length)
            for i, body in zip(to_code, bodies):
                lm_bodies[i] = bytes(body)

        out: list[bytes] = []
        for i, (data, dt, _) in enumerate(prepared):
            n = data.shape[0]
            crc = crc32c(data)
            mode, body = Mode.RAW, None
            best = n
            if n:
                shuffled = np.concatenate([p for p, _ in planes[i]]) if len(planes[i]) > 1 else data
                zbody = zstd_compress(shuffled, self.fallback_level)
                if len(zbody) < best:
                    mode, body, best = Mode.ZSTD, zbody, len(zbody)
                if len(lm_bodies[i]) < best:
                    mode, body, best = lm_mode, lm_bodies[i], len(lm_bodies[i])
            if mode.uses_model:
                lm_dtype = codings[i].dtype if i in codings else dt
                version = None
                if mode == Mode.LM_MIX:
                    version = written_format(self.mixer_version, codings[i].decimal is not None)
                header = Header(mode, n, crc, lm_dtype, segment_length, model_id, version)
            else:
                header = Header(mode, n, crc, dt)
            if body is None:
                body = data.tobytes()
            out.append(pack_header(header) + body)
        return out

    def decode_batch(self, bufs: Sequence[Any], outs: Sequence[Any] | None = None) -> list:
        """Decode many chunks at once (LM chunks pooled per model and segment length).

        ``outs``, if given, holds one destination (or ``None``) per chunk, as for :meth:`decode`.
        Errors name the chunk's index when more than one chunk is decoded.
        """
        if outs is not None and len(outs) != len(bufs):
            raise ValueError(f"{len(outs)} outputs given for {len(bufs)} chunks")
        multi = len(bufs) > 1
        parsed: list[tuple[Header, np.ndarray]] = []
        dests: list[np.ndarray | None] = []
        for i, buf in enumerate(bufs):
            with _chunk_context(i, multi):
                arr = ensure_contiguous_ndarray(buf)
                arr = arr.view(np.uint8).reshape(-1)
                header = parse_header(arr)
                parsed.append((header, arr[HEADER_SIZE:]))
            out = None if outs is None else outs[i]
            dest = None
            if out is not None:
                dest = ensure_contiguous_ndarray(out)
                if dest.nbytes != header.raw_length:
                    raise ValueError(
                        f"out has {dest.nbytes} bytes but the chunk"
                        f"{f' {i}' if multi else ''} decodes to {header.raw_length} bytes"
                    )
                if not dest.flags.writeable:
                    raise ValueError("out must be writeable")
                dest = dest.view(np.uint8).reshape(-1)
            dests.append(dest)

        decoded: list[Any] = [None] * len(parsed)
        groups: dict[tuple[Mode, bytes, int], list[int]] = {}
        for i, (header, body) in enumerate(parsed):
            if header.mode.uses_model:
                key = (header.mode, header.model_id, header.segment_length)
                groups.setdefault(key, []).append(i)
            elif header.mode == Mode.ZSTD:
                with _chunk_context(i, multi):
                    shuffled = zstd_decompress(body, header.raw_length)
                decoded[i] = unshuffle(shuffled, header.raw_length, header.dtype)
            else:
                decoded[i] = body
        for (mode, model_id, segment_length), idx in groups.items():
            self._decode_model_group(parsed, decoded, mode, model_id, segment_length, idx, multi)

        results: list[Any] = []
        for i, ((header, _), data, dest) in enumerate(zip(parsed, decoded, dests)):
            if crc32c(data) != header.raw_crc32c:
                with _chunk_context(i, multi):
                    raise CorruptChunkError("decoded data fails its CRC32C checksum")
            if dest is None:
                results.append(bytes(data))
            else:
                dest[...] = np.frombuffer(data, dtype=np.uint8)
                results.append(outs[i])
        return results

    def _decode_model_group(self, parsed, decoded, mode, model_id, segment_length, idx, multi):
        from . import lmcoding, mixcoding

        def decode_planes(model, bodies, layouts, segment_length, versions, dtypes):
            """[(planes, lm_mix stream parameters or None), ...]"""
            if mode == Mode.LM_MIX:
                return mixcoding.decode_chunks(model, bodies, layouts, segment_length, versions, dtypes)
            return [(p, None) for p in lmcoding.decode_planes(model, bodies, layouts, segment_length)]

        model = _load_model_by_id(model_id, self.device)
        if segment_length > model.context_length:
            with _chunk_context(idx[0], multi):
                raise CorruptChunkError(
                    f"segment length {segment_length} exceeds the model's context length "
                    f"{model.context_length}"
                )
        headers = [parsed[i][0] for i in idx]
        layouts = [plane_layout(h.raw_length, h.dtype) for h in headers]
        dtypes = [h.dtype for h in headers]
        bodies = [parsed[i][1].tobytes() for i in idx]
        try:
            versions = [h.version for h in headers]
            planes = decode_planes(model, bodies, layouts, segment_length, versions, dtypes)
        except LMCodecError:
            if not multi:
                raise
            # pooled call failed: find (and name) the first chunk that fails on its own
            for j, i in enumerate(idx):
                with _chunk_context(i, multi):
                    decode_planes(model, bodies[j : j + 1], layouts[j : j + 1], segment_length, versions[j : j + 1],
                                  dtypes[j : j + 1])
            raise
        for i, h, (p, params) in zip(idx, headers, planes):
            decoded[i] = join_planes(list(p), h.raw_length, h.dtype)
            if params is not None:
                invert_transform(decoded[i], h.dtype, Transform(params.transform), params.record_length)
                if params.decimal is not None:
                    with _chunk_context(i, multi):
                        from_integers(decoded[i], params.decimal)


class _chunk_context:
    """Prefix lmcodec errors raised inside with the chunk index (batches only)."""

    def __init__(self, index: int | None, multi: bool):
        self.index, self.multi = index, multi

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not self.multi or self.index is None:
            return False
        if isinstance(exc, LMCodecError) and not getattr(exc, "_lmcodec_indexed", False):
            new = type(exc)(f"chunk {self.index}: {exc}")
            new._lmcodec_indexed = True
            raise new from exc
        return False


register_codec(LMCodec)
