"""Zarr format 3 codec: :class:`LMZarrCodec`, a ``BytesBytesCodec`` named ``"lmcodec.lmcodec"``.

The codec stores exactly the chunks :class:`lmcodec.LMCodec` writes (docs/format.md), so its
configuration mirrors ``LMCodec``'s parameters. It differs from a plain numcodecs wrapper in two
ways:

* :meth:`LMZarrCodec.evolve_from_array_spec` records the array's element dtype (little-endian,
  the byte order of zarr's default ``bytes`` serializer) in the configuration, so the byte
  shuffle sees whole elements without the user passing a dtype;
* :meth:`LMZarrCodec.encode` / :meth:`LMZarrCodec.decode` hand the whole batch zarr gives them
  (``codec_pipeline.batch_size`` chunks) to ``LMCodec.encode_batch`` / ``decode_batch``, so the
  model evaluates the segments of all those chunks in one pooled call.

The name ``"lmcodec.lmcodec"`` is not registered in zarr-extensions; it follows zarr-python's
``<package>.<codec id>`` pattern for third-party codecs (``numcodecs.zstd``, ...). zarr finds the
class through the ``zarr.codecs`` entry point; importing this module also registers it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from zarr.abc.codec import BytesBytesCodec
from zarr.core.common import JSON, parse_named_configuration
from zarr.registry import register_codec

from .codec import LMCodec, record_length
from .mixcoding import DEFAULT_STREAM_LENGTH
from .preprocess import plane_itemsize, shuffle_dtype

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer

__all__ = ["CODEC_NAME", "LMZarrCodec"]

CODEC_NAME = "lmcodec.lmcodec"
"""The codec's ``name`` in zarr.json (zarr format 3)."""

_PARAMETERS = (
    "model", "dtype", "segment_length", "device", "fallback_level", "mix", "stream_length", "mixer_version"
)


@dataclass(frozen=True)
class LMZarrCodec(BytesBytesCodec):
    """lmcodec as a zarr format 3 bytes-to-bytes codec (compressor).

    Parameters are those of :class:`lmcodec.LMCodec` (``model=None`` resolves to the default
    model's name when the codec is created, so the stored configuration names a model).
    ``dtype=None`` is filled in from the array by :meth:`evolve_from_array_spec`.
    """

    is_fixed_size = False

    model: str
    dtype: str | None
    segment_length: int | None
    device: str
    fallback_level: int
    mix: bool
    stream_length: int
    mixer_version: int

    def __init__(
        self,
        *,
        model: str | None = None,
        dtype: str | None = None,
        segment_length: int | None = None,
        device: str = "auto",
        fallback_level: int = 3,
        mix: bool = True,
        stream_length: int = DEFAULT_STREAM_LENGTH,
        mixer_version: int | None = None,
    ) -> None:
        # LMCodec validates and normalises every parameter (and resolves the default model)
        config = LMCodec(
            model, dtype, segment_length, device, fallback_level, mix, stream_length, mixer_version
        ).get_config()
        for key in _PARAMETERS:
            object.__setattr__(self, key, config[key])

    @cached_property
    def _codec(self) -> LMCodec:
        return LMCodec(**{key: getattr(self, key) for key in _PARAMETERS})

    # -- metadata --------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> Self:
        _, configuration = parse_named_configuration(
            data, CODEC_NAME, require_configuration=False
        )
        return cls(**(configuration or {}))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, JSON]:
        """``{"name": "lmcodec.lmcodec", "configuration": {...}}``; unset options are omitted."""
        configuration: dict[str, JSON] = {
            "model": self.model,
            "device": self.device,
            "fallback_level": self.fallback_level,
            "mix": self.mix,
            "stream_length": self.stream_length,
            "mixer_version": self.mixer_version,
        }
        if self.dtype is not None:
            configuration["dtype"] = self.dtype
        if self.segment_length is not None:
            configuration["segment_length"] = self.segment_length
        return {"name": CODEC_NAME, "configuration": configuration}

    def evolve_from_array_spec(self, array_spec: ArraySpec) -> Self:
        """Fill in ``dtype`` from the array's data type, if it is not set and is shuffleable.

        The dtype is recorded little-endian: zarr's ``bytes`` serializer writes little-endian
        unless configured otherwise. A wrong byte order (or a dtype that does not match the
        bytes, e.g. after another codec) only costs compression, never correctness: every
        chunk header records the dtype its bytes were shuffled with.
        """
        if self.dtype is not None:
            return self
        element = np.dtype(array_spec.dtype.to_native_dtype())
        if shuffle_dtype(element) is None:
            return self
        return replace(self, dtype=element.newbyteorder("<").str)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError("lmcodec chunks have a data-dependent size")

    # -- batches ---------------------------------------------------------------------------

    async def encode(
        self, chunks_and_specs: Iterable[tuple[Buffer | None, ArraySpec]]
    ) -> Iterable[Buffer | None]:
        """Encode a batch of chunks with one ``LMCodec.encode_batch`` call (off the event loop).

        The mixer's record length comes from the chunk's shape in its array spec (zarr hands
        this codec flat bytes).
        """
        items = list(chunks_and_specs)
        records = [self._record_length(spec) for chunk, spec in items if chunk is not None]
        return await self._run(
            lambda arrays: self._codec.encode_batch(arrays, record_lengths=records), items
        )

    def _record_length(self, spec: ArraySpec) -> int:
        """Bytes of one plane per row of the chunk (:func:`lmcodec.codec.record_length`)."""
        itemsize = np.dtype(spec.dtype.to_native_dtype()).itemsize
        return record_length(spec.shape, itemsize, plane_itemsize(self.dtype))

    async def decode(
        self, chunks_and_specs: Iterable[tuple[Buffer | None, ArraySpec]]
    ) -> Iterable[Buffer | None]:
        """Decode a batch of chunks with one ``LMCodec.decode_batch`` call (off the event loop)."""
        return await self._run(self._codec.decode_batch, chunks_and_specs)

    @staticmethod
    async def _run(
        code_batch: Callable[[list[np.ndarray]], list[bytes]],
        chunks_and_specs: Iterable[tuple[Buffer | None, ArraySpec]],
    ) -> list[Buffer | None]:
        """``code_batch`` of the chunks that are not ``None``, in a worker thread; ``None``
        stays ``None``, and an all-``None`` batch never reaches ``code_batch``."""
        items = list(chunks_and_specs)
        present = [i for i, (chunk, _) in enumerate(items) if chunk is not None]
        out: list[Buffer | None] = [None] * len(items)
        if present:
            arrays = [items[i][0].as_numpy_array() for i in present]  # type: ignore[union-attr]
            results = await asyncio.to_thread(code_batch, arrays)
            for i, data in zip(present, results, strict=True):
                out[i] = items[i][1].prototype.buffer.from_bytes(data)
        return out


register_codec(CODEC_NAME, LMZarrCodec)
