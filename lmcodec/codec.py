"""``LMCodec``: the numcodecs codec (``codec_id = "lmcodec"``).

Each encoded chunk is a 36-byte header (:mod:`lmcodec.format`) followed by the smallest of three
bodies: the raw bytes, a zstd frame of the byte planes (the fallback) or the LM body (the byte
planes coded with rANS under the model's predictions, :mod:`lmcodec.lmcoding`). So an encoded
chunk is never longer than the raw chunk plus :data:`~lmcodec.format.HEADER_SIZE`.

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
from .preprocess import join_planes, plane_layout, shuffle_dtype, split_planes, unshuffle

__all__ = ["LMCodec"]


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
        Bytes per coded segment (one rANS lane, one model context); ``None`` means the model's
        context length. Longer segments compress better, shorter ones decode in more parallel
        lanes.
    device : str
        Where the model runs: ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :mod:`lmcodec.models`).
    fallback_level : int
        zstd level of the fallback body (stored instead of the LM body when smaller).

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

    # -- numcodecs protocol ----------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {
            "id": self.codec_id,
            "model": self.model,
            "dtype": self.dtype,
            "segment_length": self.segment_length,
            "device": self.device,
            "fallback_level": self.fallback_level,
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

    def _prepare(self, buf) -> tuple[np.ndarray, np.dtype | None]:
        """``(raw bytes as uint8 1-D, shuffle dtype)`` of one input chunk."""
        if isinstance(buf, np.ndarray) and not (buf.flags.c_contiguous or buf.flags.f_contiguous):
            buf = np.ascontiguousarray(buf)
        arr = ensure_contiguous_ndarray(buf)
        if self.dtype is not None:
            dt = np.dtype(self.dtype)
        elif arr.dtype == np.uint8 and not isinstance(buf, np.ndarray):
            dt = None  # plain bytes-like input
        else:
            dt = arr.dtype
        data = arr.view(np.uint8).reshape(-1)
        if data.shape[0] > MAX_RAW_LENGTH:
            raise ValueError(f"chunk of {data.shape[0]} bytes exceeds the {MAX_RAW_LENGTH} cap")
        return data, shuffle_dtype(dt)

    def encode_batch(self, bufs: Sequence[Any]) -> list[bytes]:
        """Encode many chunks at once; the result equals ``[self.encode(b) for b in bufs]``.

        The LM segments of all chunks are coded in one pooled call, which is what makes the
        model run efficiently.
        """
        prepared = [self._prepare(b) for b in bufs]
        to_code = [i for i, (data, _) in enumerate(prepared) if data.shape[0]]
        planes = {i: split_planes(*prepared[i]) for i in to_code}
        lm_bodies: dict[int, bytes] = {}
        model_id = bytes(8)
        segment_length = 0
        if to_code:
            from .lmcoding import encode_planes

            model = _load_model(self.model, self.device)
            model_id = bytes(model.model_id)
            segment_length = self.segment_length or int(model.context_length)
            if segment_length > model.context_length:
                raise ValueError(
                    f"segment_length {segment_length} exceeds the context length "
                    f"{model.context_length} of model {self.model!r}"
                )
            chunks = [planes[i] for i in to_code]
            for i, body in zip(to_code, encode_planes(model, chunks, segment_length)):
                lm_bodies[i] = bytes(body)

        out: list[bytes] = []
        for i, (data, dt) in enumerate(prepared):
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
                    mode, body, best = Mode.LM, lm_bodies[i], len(lm_bodies[i])
            if mode == Mode.LM:
                header = Header(Mode.LM, n, crc, dt, segment_length, model_id)
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
        groups: dict[tuple[bytes, int], list[int]] = {}
        for i, (header, body) in enumerate(parsed):
            if header.mode == Mode.LM:
                groups.setdefault((header.model_id, header.segment_length), []).append(i)
            elif header.mode == Mode.ZSTD:
                with _chunk_context(i, multi):
                    shuffled = zstd_decompress(body, header.raw_length)
                decoded[i] = unshuffle(shuffled, header.raw_length, header.dtype)
            else:
                decoded[i] = body
        for (model_id, segment_length), idx in groups.items():
            self._decode_lm_group(parsed, decoded, model_id, segment_length, idx, multi)

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

    def _decode_lm_group(self, parsed, decoded, model_id, segment_length, idx, multi):
        from .lmcoding import decode_planes

        model = _load_model_by_id(model_id, self.device)
        if segment_length > model.context_length:
            with _chunk_context(idx[0], multi):
                raise CorruptChunkError(
                    f"segment length {segment_length} exceeds the model's context length "
                    f"{model.context_length}"
                )
        headers = [parsed[i][0] for i in idx]
        layouts = [plane_layout(h.raw_length, h.dtype) for h in headers]
        bodies = [parsed[i][1].tobytes() for i in idx]
        try:
            planes = decode_planes(model, bodies, layouts, segment_length)
        except LMCodecError:
            if not multi:
                raise
            # pooled call failed: find (and name) the first chunk that fails on its own
            for j, i in enumerate(idx):
                with _chunk_context(i, multi):
                    decode_planes(model, bodies[j : j + 1], layouts[j : j + 1], segment_length)
            raise
        for i, h, p in zip(idx, headers, planes):
            decoded[i] = join_planes(list(p), h.raw_length, h.dtype)


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
