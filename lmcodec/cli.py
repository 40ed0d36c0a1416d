"""Command line interface: ``lmcodec compress | decompress | info | demo | bench``.

Files are cut into chunks of ``--chunk-size`` bytes, every chunk is coded with :class:`LMCodec`
(batches of chunks share one model call) and the chunks are stored in a small *file container*
(docs/format.md, "File container")::

    offset  size   field
    0       4      magic b"LMCf"
    4       1      container version (1)
    5       1      flags: bit 0 = an .npy header is stored; bits 1..7 reserved, zero
    6       2      reserved, zero
    8       8      chunk count N                      (u64, little-endian)
    16      8      total raw length of the chunks     (u64)
    24      4      length H of the stored .npy header (u32; 0 without one)
    28      H      the .npy header, verbatim (magic, version, header dict, padding)
    28+H    8*N    encoded length of each chunk       (u64 each)
    28+H+8N 4      CRC32C of all the bytes above
    ...            the N encoded chunks, back to back

``.npy`` inputs (recognised by their magic) are dtype-aware: the array's dtype drives the byte
shuffle and the header is stored verbatim, so decompression writes back an identical file.

Exit status: 0 success, 1 the operation failed (missing/unreadable file, corrupt input, model not
installed), 2 bad usage.
"""

from __future__ import annotations

import argparse
import io
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .codec import FAST_PRESET
from .errors import CorruptChunkError, LMCodecError, UnsupportedFormatError
from .format import HEADER_SIZE, MAGIC, MAX_RAW_LENGTH, Mode, crc32c, parse_header
from .mixcoding import BODY_HEAD_BYTES, DECIMAL_FORMAT, DEFAULT_STREAM_LENGTH, FORMAT_OF_MIXER, decimal_floats

__all__ = ["main", "CONTAINER_MAGIC", "CONTAINER_VERSION"]

CONTAINER_MAGIC = b"LMCf"
CONTAINER_VERSION = 1
_FIXED = struct.Struct("<4sBBHQQI")  # magic, version, flags, reserved, N, total raw, H
_FLAG_NPY = 0x01
_NPY_MAGIC = b"\x93NUMPY"
_MAX_NPY_HEADER = 1 << 24
DEFAULT_CHUNK_SIZE = 1 << 20
_BATCH_BYTES = 8 << 20  # raw bytes handed to one encode_batch / decode_batch call


class CLIError(Exception):
    """A failure reported as ``lmcodec: error: ...`` with exit status 1."""


# -- container -------------------------------------------------------------------------------


@dataclass
class Container:
    chunk_lengths: list[int]
    total_raw: int
    npy_header: bytes
    data_offset: int  # file offset of the first chunk


def _pack_container_header(chunk_lengths: list[int], total_raw: int, npy_header: bytes) -> bytes:
    flags = _FLAG_NPY if npy_header else 0
    head = _FIXED.pack(
        CONTAINER_MAGIC, CONTAINER_VERSION, flags, 0, len(chunk_lengths), total_raw, len(npy_header)
    )
    head += npy_header + struct.pack(f"<{len(chunk_lengths)}Q", *chunk_lengths)
    return head + struct.pack("<I", crc32c(head))


def _read_exact(f, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise CorruptChunkError(f"truncated file: {what} needs {n} bytes, found {len(data)}")
    return data


def read_container(f, file_size: int) -> Container:
    """Parse and validate the container header of the open binary file ``f`` (at offset 0)."""
    fixed = f.read(_FIXED.size)
    if len(fixed) < 4 or fixed[:4] != CONTAINER_MAGIC:
        raise CorruptChunkError("not an lmcodec file (bad magic)")
    if len(fixed) < _FIXED.size:
        raise CorruptChunkError("truncated lmcodec file header")
    magic, version, flags, reserved, n, total_raw, h = _FIXED.unpack(fixed)
    if version > CONTAINER_VERSION:
        raise UnsupportedFormatError(
            f"file container version {version}; this lmcodec reads versions 1..{CONTAINER_VERSION}"
        )
    if version == 0 or flags & ~_FLAG_NPY or reserved:
        raise CorruptChunkError("invalid lmcodec file header")
    if bool(flags & _FLAG_NPY) != (h > 0) or h > _MAX_NPY_HEADER:
        raise CorruptChunkError("invalid .npy header length in lmcodec file header")
    table_end = _FIXED.size + h + 8 * n + 4
    if n > file_size // HEADER_SIZE or table_end > file_size:
        raise CorruptChunkError("truncated lmcodec file or impossible chunk count")
    rest = _read_exact(f, h + 8 * n + 4, "file header")
    (stored,) = struct.unpack_from("<I", rest, h + 8 * n)
    if crc32c(fixed + rest[:-4]) != stored:
        raise CorruptChunkError("lmcodec file header checksum mismatch")
    lengths = list(struct.unpack_from(f"<{n}Q", rest, h))
    if any(length < HEADER_SIZE for length in lengths) or table_end + sum(lengths) != file_size:
        raise CorruptChunkError(
            f"lmcodec file is {file_size} bytes but its header accounts for "
            f"{table_end + sum(lengths)}"
        )
    return Container(lengths, total_raw, bytes(rest[:h]), table_end)


# -- npy -------------------------------------------------------------------------------------


def _sniff_npy(f) -> tuple[bytes, np.dtype | None, dict] | None:
    """``(verbatim header, dtype, info)`` if the open file is an .npy file, else ``None``."""
    start = f.read(len(_NPY_MAGIC))
    f.seek(0)
    if start != _NPY_MAGIC:
        return None
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, _MAX_NPY_HEADER)
        elif version in ((2, 0), (3, 0)):  # same layout; 3.0 only allows utf-8 field names
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, _MAX_NPY_HEADER)
        else:
            raise ValueError(f"unknown .npy version {version}")
        offset = f.tell()
    except Exception:  # not a well-formed .npy after all: compress it as plain bytes
        f.seek(0)
        return None
    f.seek(0)
    header = f.read(offset)
    info = {"shape": shape, "fortran_order": fortran, "dtype": dtype}
    return header, (None if dtype.hasobject else dtype), info


# -- helpers ---------------------------------------------------------------------------------


def _npy_record_length(info: dict, dtype: np.dtype) -> int:
    """The lm_mix record length of an .npy array's rows (0: none), see codec.record_length."""
    from .codec import record_length
    from .preprocess import plane_itemsize

    shape = info["shape"][::-1] if info["fortran_order"] else info["shape"]
    return record_length(shape, info["dtype"].itemsize, plane_itemsize(dtype))


def _parse_size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    suffix = t[-1:] if t[-1:] in "KMG" else ""
    try:
        value = int(t[: len(t) - len(suffix)]) * units[suffix]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r} (e.g. 1048576, 512K, 4M)"
        ) from None
    if not 1 <= value <= MAX_RAW_LENGTH:
        raise argparse.ArgumentTypeError(f"size must be in 1..{MAX_RAW_LENGTH}")
    return value


def _parse_dtype(text: str) -> np.dtype:
    try:
        dt = np.dtype(text)
    except TypeError:
        raise argparse.ArgumentTypeError(f"invalid numpy dtype {text!r}") from None
    if dt.hasobject:
        raise argparse.ArgumentTypeError("object dtypes are not supported")
    return dt


def _open_input(path: str):
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise CLIError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise CLIError(f"is a directory: {path}") from None
    except OSError as e:
        raise CLIError(f"cannot read {path}: {e.strerror or e}") from None
    return f


class _AtomicOutput:
    """Write to ``path + '.tmp-PID'`` and move it into place only on success."""

    def __init__(self, path: str):
        self.path = path
        self.tmp = f"{path}.tmp-{os.getpid()}"

    def __enter__(self):
        try:
            self.f = open(self.tmp, "w+b")
        except OSError as e:
            raise CLIError(f"cannot write {self.path}: {e.strerror or e}") from None
        return self.f

    def __exit__(self, exc_type, exc, tb):
        self.f.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
        return False


def _check_distinct(src: str, dst: str) -> None:
    try:
        same = os.path.samefile(src, dst)
    except OSError:
        same = False
    if same:
        raise CLIError("input and output are the same file")


def _progress(total: int, n_chunks: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        file=sys.stderr,
        disable=quiet or n_chunks <= 1,
        leave=False,
    )


def _batches(sizes: list[int]) -> Iterator[range]:
    """Consecutive index ranges whose sizes add up to about ``_BATCH_BYTES``."""
    start, acc = 0, 0
    for i, size in enumerate(sizes):
        if i > start and acc + size > _BATCH_BYTES:
            yield range(start, i)
            start, acc = i, 0
        acc += size
    if start < len(sizes):
        yield range(start, len(sizes))


def _model_label(model_id: bytes) -> str:
    try:
        from . import models

        return str(models.model_info(model_id)["name"])
    except Exception:  # not installed here (or no registry): show the id
        return model_id.hex()


# -- commands --------------------------------------------------------------------------------


def cmd_compress(args) -> int:
    from .codec import LMCodec

    _check_distinct(args.input, args.output)
    with _open_input(args.input) as f:
        file_size = os.fstat(f.fileno()).st_size
        npy = _sniff_npy(f)
        npy_header, dtype = (npy[0], npy[1]) if npy else (b"", None)
        if args.dtype is not None:
            dtype = args.dtype
        record = _npy_record_length(npy[2], dtype) if npy and dtype is not None else 0
        preset = FAST_PRESET if args.fast else {}
        codec = LMCodec(
            model=args.model or preset.get("model"),
            dtype=None if dtype is None else dtype.str,
            mix=not args.no_mix,
            stream_length=args.stream_length,
            mixer_version=args.mixer_version or preset.get("mixer_version"),
        )
        chunk = args.chunk_size
        if dtype is not None and dtype.itemsize > 1 and chunk >= dtype.itemsize:
            chunk -= chunk % dtype.itemsize  # keep elements whole within a chunk
        f.seek(len(npy_header))
        total_raw = file_size - len(npy_header)
        sizes = [min(chunk, total_raw - s) for s in range(0, total_raw, chunk)]
        lengths: list[int] = []
        with _AtomicOutput(args.output) as out, _progress(
            total_raw, len(sizes), "compress", args.quiet
        ) as bar:
            out.write(_pack_container_header([0] * len(sizes), total_raw, npy_header))
            for batch in _batches(sizes):
                raws = [_read_exact(f, sizes[i], "input") for i in batch]
                for enc in codec.encode_batch(raws, record_lengths=[record] * len(raws)):
                    out.write(enc)
                    lengths.append(len(enc))
                bar.update(sum(len(r) for r in raws))
            if f.read(1):
                raise CLIError(f"{args.input} grew while it was being compressed")
            compressed = out.tell()
            out.seek(0)
            out.write(_pack_container_header(lengths, total_raw, npy_header))
    if args.verbose:
        rate = 8 * compressed / file_size if file_size else 0.0
        print(
            f"{args.input}: {file_size} -> {compressed} bytes ({rate:.3f} bits/byte)",
            file=sys.stderr,
        )
    return 0


def _decoder():
    """A codec for decoding only: chunks name their model, so no default model is needed."""
    from .codec import LMCodec

    return LMCodec(model="(decode only)")


def _decode_bare_chunk(f, out_path: str) -> None:
    raw = _decoder().decode(f.read())
    with _AtomicOutput(out_path) as out:
        out.write(raw)


def _chunk_headers(f, cont: Container) -> list:
    """Parse the header of every chunk of the container (seeks; leaves ``f`` anywhere)."""
    headers = []
    pos = cont.data_offset
    for i, length in enumerate(cont.chunk_lengths):
        f.seek(pos)
        try:
            head = _read_exact(f, HEADER_SIZE, "chunk header")
            headers.append(parse_header(head, body_length=length - HEADER_SIZE))
        except LMCodecError as e:
            raise type(e)(f"chunk {i}: {e}") from None
        pos += length
    total = sum(h.raw_length for h in headers)
    if total != cont.total_raw:
        raise CorruptChunkError(
            f"chunks declare {total} bytes but the file header declares {cont.total_raw}"
        )
    return headers


def cmd_decompress(args) -> int:
    _check_distinct(args.input, args.output)
    with _open_input(args.input) as f:
        file_size = os.fstat(f.fileno()).st_size
        if f.read(4) == MAGIC:
            f.seek(0)
            _decode_bare_chunk(f, args.output)
            return 0
        f.seek(0)
        cont = read_container(f, file_size)
        headers = _chunk_headers(f, cont)
        f.seek(cont.data_offset)
        codec = _decoder()
        with _AtomicOutput(args.output) as out, _progress(
            cont.total_raw, len(headers), "decompress", args.quiet
        ) as bar:
            out.write(cont.npy_header)
            for batch in _batches([h.raw_length for h in headers]):
                encs = [_read_exact(f, cont.chunk_lengths[i], f"chunk {i}") for i in batch]
                try:
                    raws = codec.decode_batch(encs)
                except LMCodecError as e:
                    # name the first failing chunk (decode them one by one, on error only)
                    for i, enc in zip(batch, encs):
                        try:
                            codec.decode(enc)
                        except LMCodecError as e1:
                            raise type(e1)(f"chunk {i}: {e1}") from None
                    raise type(e)(f"chunks {batch.start}..{batch.stop - 1}: {e}") from None
                for raw in raws:
                    out.write(raw)
                bar.update(sum(len(r) for r in raws))
    return 0


def _dtype_label(f, offset: int, length: int, header) -> str:
    """A chunk's dtype as ``info`` shows it: the header's (``bytes`` for none) or, for a chunk
    with a decimal step (format version 5), the floats' and the integers' (``<f8 as <i8``)."""
    label = "bytes" if header.dtype is None else header.dtype.str
    if header.mode != Mode.LM_MIX or header.version < DECIMAL_FORMAT:
        return label
    f.seek(offset + HEADER_SIZE)
    head = _read_exact(f, min(length - HEADER_SIZE, BODY_HEAD_BYTES), "chunk body")
    floats = decimal_floats(head, header.segment_length, header.version)
    return label if floats is None else f"{floats.str} as {label}"


def cmd_info(args) -> int:
    with _open_input(args.input) as f:
        file_size = os.fstat(f.fileno()).st_size
        if f.read(4) == MAGIC:
            f.seek(0)
            head = f.read(HEADER_SIZE)
            headers = [parse_header(head, body_length=file_size - HEADER_SIZE)]
            lengths = [file_size]
            offsets = [0]
            cont = None
        else:
            f.seek(0)
            cont = read_container(f, file_size)
            lengths = cont.chunk_lengths
            headers = _chunk_headers(f, cont)
            offsets = [cont.data_offset + sum(lengths[:i]) for i in range(len(lengths))]
        dtypes = [_dtype_label(f, offset, length, h) for offset, length, h in zip(offsets, lengths, headers)]

    total_raw = sum(h.raw_length for h in headers)
    p = print
    p(f"file:        {args.input}")
    if cont is None:
        p("format:      single lmcodec chunk")
    else:
        p(f"format:      lmcodec file (container v{CONTAINER_VERSION}), {len(lengths)} chunks")
        if cont.npy_header:
            npy = _sniff_npy(io.BytesIO(cont.npy_header))
            if npy:
                i = npy[2]
                p(
                    f"npy:         shape {i['shape']}, dtype {i['dtype'].str}, "
                    f"{'Fortran' if i['fortran_order'] else 'C'} order"
                )
    raw_file = total_raw + (len(cont.npy_header) if cont else 0)
    p(f"raw size:    {raw_file} bytes")
    p(f"stored size: {file_size} bytes")
    if raw_file:
        rate, ratio = 8 * file_size / raw_file, raw_file / file_size
        p(f"rate:        {rate:.4f} bits/byte (ratio {ratio:.3f})")
    modes = {m: sum(h.mode == m for h in headers) for m in Mode}
    p("modes:       " + ", ".join(f"{m.name.lower()} {c}" for m, c in modes.items() if c))
    models = sorted({h.model_id for h in headers if h.mode.uses_model})
    if models:
        p("models:      " + ", ".join(f"{_model_label(m)} ({m.hex()})" for m in models))
    p("dtypes:      " + ", ".join(sorted(set(dtypes))))
    if args.chunks or len(headers) <= 16:
        p("")
        p(f"{'chunk':>6} {'mode':>6} {'dtype':>12} {'raw':>12} {'stored':>12} {'bits/B':>7}  model")
        for i, (h, length, dt) in enumerate(zip(headers, lengths, dtypes)):
            rate = 8 * length / h.raw_length if h.raw_length else 0.0
            model = "-"
            if h.mode.uses_model:
                model = f"{_model_label(h.model_id)} seg={h.segment_length}"
            p(f"{i:>6} {h.mode.name.lower():>6} {dt:>12} {h.raw_length:>12} {length:>12} "
              f"{rate:>7.3f}  {model}")
    return 0


def cmd_demo(args) -> int:
    if args.store is not None and os.path.exists(args.store):
        raise CLIError(f"{args.store} already exists; give a new path for the demo store")
    try:
        from .demo import run_demo

        ok = run_demo(args.store, args.model)
    except ImportError as e:
        raise CLIError(f"lmcodec demo needs zarr and matplotlib ({e}): pip install \"lmcodec[demo]\"") from None
    return 0 if ok else 1


def cmd_bench(args) -> int:
    from .bench import run_from_args

    return run_from_args(args)


# -- entry point -----------------------------------------------------------------------------


def cmd_train(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CLIError("lmcodec train needs PyTorch: pip install 'lmcodec[train]'") from None
    from .train import main as train_main

    try:
        train_main(args.train_args)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="lmcodec", description="Lossless compression with a byte-level Transformer + rANS."
    )
    parser.add_argument("--version", action="version", version=f"lmcodec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    c = sub.add_parser("compress", help="compress a raw or .npy file")
    c.add_argument("input", metavar="INPUT")
    c.add_argument("output", metavar="OUTPUT")
    c.add_argument(
        "--model", default=None, help="installed model name (default: the default model)"
    )
    c.add_argument(
        "--dtype",
        type=_parse_dtype,
        default=None,
        help="element dtype for the byte shuffle, e.g. '<f4' (default: from the .npy header, "
        "else plain bytes)",
    )
    c.add_argument(
        "--chunk-size",
        type=_parse_size,
        default=DEFAULT_CHUNK_SIZE,
        metavar="BYTES",
        help="bytes per chunk (default 1 MiB; suffixes K, M, G allowed)",
    )
    c.add_argument(
        "--no-mix",
        action="store_true",
        help="code with the model alone (mode lm, format version 1) instead of mixing it with "
        "adaptive statistics (mode lm_mix)",
    )
    c.add_argument(
        "--fast",
        action="store_true",
        help=f"the fast preset, LMCodec.fast(): model {FAST_PRESET['model']} and mixer version "
        f"{FAST_PRESET['mixer_version']} unless --model / --mixer-version say otherwise",
    )
    c.add_argument(
        "--mixer-version",
        type=int,
        choices=sorted(FORMAT_OF_MIXER),
        default=None,
        help="mixer rules of mode lm_mix (default: the newest; 1 is lighter: faster, and "
        "compresses less, see docs/performance.md)",
    )
    c.add_argument(
        "--stream-length",
        type=_parse_size,
        default=DEFAULT_STREAM_LENGTH,
        metavar="BYTES",
        help=f"bytes per mixed stream (default {DEFAULT_STREAM_LENGTH})",
    )
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    c.add_argument("-v", "--verbose", action="store_true", help="print sizes when done")
    c.set_defaults(func=cmd_compress)

    d = sub.add_parser("decompress", help="decompress an lmcodec file")
    d.add_argument("input", metavar="INPUT")
    d.add_argument("output", metavar="OUTPUT")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_decompress)

    i = sub.add_parser("info", help="describe an lmcodec file")
    i.add_argument("input", metavar="FILE")
    i.add_argument("--chunks", action="store_true", help="list every chunk")
    i.set_defaults(func=cmd_info)

    m = sub.add_parser("demo", help="real data -> Zarr store with LMCodec -> read back, vs zstd")
    m.add_argument("--store", default=None, metavar="PATH",
                   help="keep the Zarr store at PATH (must not exist; default: a temporary directory)")
    m.add_argument("--model", default=None, help="installed model name (default: the default model)")
    m.set_defaults(func=cmd_demo)

    # listed for --help only: main() hands "lmcodec train ..." to lmcodec.train's own parser
    sub.add_parser("train", help="train, fine-tune (finetune --from PATH) or export a model; "
                   "needs the train extra", add_help=False)

    from .bench import add_arguments as add_bench_arguments

    b = sub.add_parser("bench", help="benchmark LMCodec and classical codecs on the corpus")
    add_bench_arguments(b)
    b.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # its own parser (lmcodec.train), --help included
        func, args = cmd_train, argparse.Namespace(train_args=argv[1:])
    else:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:  # usage errors (2), --help / --version (0): return, do not exit
            return e.code if isinstance(e.code, int) else 2
        func = args.func
    try:
        return func(args)
    except CLIError as e:
        print(f"lmcodec: error: {e}", file=sys.stderr)
        return 1
    except LMCodecError as e:
        kind = {
            "CorruptChunkError": "corrupt input",
            "ModelNotFoundError": "model not found",
            "UnsupportedFormatError": "unsupported format",
        }.get(type(e).__name__, "error")
        print(f"lmcodec: {kind}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"lmcodec: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lmcodec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
