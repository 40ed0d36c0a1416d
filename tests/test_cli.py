"""The command line: compress / decompress / info round trips and error exits."""

from __future__ import annotations

import numpy as np
import pytest

from lmcodec.cli import CONTAINER_MAGIC, main
from lmcodec.format import MAGIC, Mode, parse_header

from conftest import FAKE, FAKE_OTHER, lm_friendly


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _round_trip(tmp_path, capsys, src, *extra):
    packed, back = tmp_path / "packed.lmc", tmp_path / "back.bin"
    code, _, err = _run(capsys, "compress", src, packed, "-q", *extra)
    assert code == 0, err
    assert packed.read_bytes()[:4] == CONTAINER_MAGIC
    code, _, err = _run(capsys, "decompress", packed, back)
    assert code == 0, err
    assert back.read_bytes() == src.read_bytes()
    code, out, err = _run(capsys, "info", packed)
    assert code == 0, err
    return packed, out


def test_raw_file_multi_chunk(tmp_path, capsys):
    src = tmp_path / "data.bin"
    rng = np.random.default_rng(0)
    data = lm_friendly(5000) + bytes(range(256)) * 8 + rng.bytes(777)
    src.write_bytes(data)
    packed, info = _round_trip(tmp_path, capsys, src, "--chunk-size", "1000")
    assert "8 chunks" in info
    assert f"raw size:    {len(data)} bytes" in info
    assert f"stored size: {packed.stat().st_size} bytes" in info
    modes = next(line for line in info.splitlines() if line.startswith("modes:"))
    assert "lm_mix " in modes
    assert "bits/byte" in info and FAKE.model_id.hex() in info
    # every chunk is listed (<= 16 chunks)
    assert sum(1 for line in info.splitlines() if line.strip()[:1].isdigit()) == 8


def test_no_mix_writes_format_version_1_chunks(tmp_path, capsys):
    src = tmp_path / "data.bin"
    src.write_bytes(lm_friendly(3000))
    packed, info = _round_trip(tmp_path, capsys, src, "--chunk-size", "1000", "--no-mix")
    modes = next(line for line in info.splitlines() if line.startswith("modes:"))
    assert modes.split() == ["modes:", "lm", "3"]


def test_info_shows_the_floats_of_decimal_chunks(tmp_path, capsys):
    """A float64 .npy of prices is coded as int64 cents; info names both dtypes, per chunk too."""
    src = tmp_path / "prices.npy"
    rng = np.random.default_rng(1)
    np.save(src, np.round(100 + np.cumsum(rng.normal(0, 1, (2000, 4)), axis=0), 2))
    _, info = _round_trip(tmp_path, capsys, src, "--chunk-size", "32000")
    assert next(line for line in info.splitlines() if line.startswith("dtypes:")).split(None, 1)[1] == "<f8 as <i8"
    assert sum(" <f8 as <i8 " in line for line in info.splitlines()) == 2


def _chunk_headers(packed):
    from lmcodec.cli import read_container

    with open(packed, "rb") as f:
        box = read_container(f, packed.stat().st_size)
        data = packed.read_bytes()
    starts = np.cumsum([box.data_offset] + box.chunk_lengths[:-1])
    return [parse_header(data[s : s + n]) for s, n in zip(starts, box.chunk_lengths)]


@pytest.mark.parametrize("extra, version", [((), 4), (("--mixer-version", "1"), 2), (("--fast",), 2),
                                            (("--fast", "--mixer-version", "2"), 3)])
def test_mixer_version_and_fast_preset(tmp_path, capsys, extra, version):
    src = tmp_path / "data.bin"
    src.write_bytes(lm_friendly(3000))
    # --fast names lm-fast-v1 unless --model says otherwise (the stand-in model here)
    packed, _ = _round_trip(tmp_path, capsys, src, "--chunk-size", "1000", "--model", FAKE.name, *extra)
    headers = _chunk_headers(packed)
    assert [h.mode for h in headers] == [Mode.LM_MIX] * 3
    assert {h.version for h in headers} == {version} and {h.model_id for h in headers} == {FAKE.model_id}


def test_raw_file_with_dtype_and_size_suffix(tmp_path, capsys):
    src = tmp_path / "data.f4"
    arr = (np.cumsum(np.random.default_rng(1).normal(0, 1, 3001)) / 10).astype(">f4")
    src.write_bytes(arr.tobytes() + b"xy")  # a tail that is not a whole element
    _, info = _round_trip(tmp_path, capsys, src, "--dtype", ">f4", "--chunk-size", "4K")
    assert ">f4" in info


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(3000, dtype="<i4").reshape(30, 100),
        np.asfortranarray((np.cumsum(np.ones((40, 70)), axis=1) / 7).astype(">f8")),
        np.array([], dtype="<f4"),
        np.array(["ab", "cde"] * 100),
        np.array([{"a": 1}, None], dtype=object),
    ],
    ids=["i4", "f8-fortran-be", "empty", "unicode", "object"],
)
def test_npy_round_trip_is_identical(tmp_path, capsys, arr):
    src = tmp_path / "array.npy"
    np.save(src, arr, allow_pickle=True)
    packed, info = _round_trip(tmp_path, capsys, src, "--chunk-size", "2000")
    assert "npy:" in info and str(arr.shape) in info
    back = np.load(tmp_path / "back.bin", allow_pickle=True)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    if arr.dtype != object:
        np.testing.assert_array_equal(back, arr)
    if arr.dtype.kind in "if" and arr.size:
        # the npy dtype drives the shuffle; chunks hold whole elements
        data = packed.read_bytes()
        assert f"{arr.dtype.str}" in info
        assert data.count(MAGIC) >= 1


def test_single_chunk_no_progress_bar_and_verbose(tmp_path, capsys):
    src = tmp_path / "small.bin"
    src.write_bytes(lm_friendly(3000))
    code, _, err = _run(capsys, "compress", src, tmp_path / "o", "-v")
    assert code == 0 and "bits/byte" in err and "it/s" not in err


def test_empty_file(tmp_path, capsys):
    src = tmp_path / "empty"
    src.write_bytes(b"")
    _, info = _round_trip(tmp_path, capsys, src)
    assert "0 chunks" in info


def test_bare_chunk_decompress_and_info(tmp_path, capsys):
    from lmcodec import LMCodec

    data = lm_friendly(2000)
    chunk = tmp_path / "chunk.lmcz"
    chunk.write_bytes(LMCodec().encode(data))
    assert parse_header(chunk.read_bytes()).mode == Mode.LM_MIX
    code, _, err = _run(capsys, "decompress", chunk, tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out").read_bytes() == data
    code, out, _ = _run(capsys, "info", chunk)
    assert code == 0 and "single lmcodec chunk" in out and "lm" in out


# -- errors -------------------------------------------------------------------------------------


def test_missing_input(tmp_path, capsys):
    for cmd in ("compress", "decompress"):
        code, _, err = _run(capsys, cmd, tmp_path / "nope", tmp_path / "out")
        assert code == 1 and "no such file" in err and "Traceback" not in err
    code, _, err = _run(capsys, "info", tmp_path / "nope")
    assert code == 1 and "no such file" in err
    code, _, err = _run(capsys, "info", tmp_path)
    assert code == 1 and "directory" in err


def test_not_an_lmcodec_file(tmp_path, capsys):
    src = tmp_path / "plain.txt"
    src.write_bytes(b"just some text")
    for cmd in ("decompress", "info"):
        argv = [cmd, src] + ([tmp_path / "out"] if cmd == "decompress" else [])
        code, _, err = _run(capsys, *argv)
        assert code == 1 and "not an lmcodec file" in err
    assert not (tmp_path / "out").exists()


def test_corrupt_and_truncated_input(tmp_path, capsys):
    src = tmp_path / "data.bin"
    src.write_bytes(lm_friendly(4000) + bytes(range(256)) * 4)
    packed = tmp_path / "packed"
    assert _run(capsys, "compress", src, packed, "--chunk-size", "1500", "-q")[0] == 0
    good = packed.read_bytes()
    out = tmp_path / "out"
    for pos in (2, 10, 30, len(good) // 2, len(good) - 1):
        bad = bytearray(good)
        bad[pos] ^= 0x40
        packed.write_bytes(bytes(bad))
        code, _, err = _run(capsys, "decompress", packed, out)
        assert code == 1 and "lmcodec:" in err and "Traceback" not in err, (pos, err)
        assert not out.exists()
    for cut in (3, 20, len(good) - 1):
        packed.write_bytes(good[:cut])
        code, _, err = _run(capsys, "decompress", packed, out)
        assert code == 1 and "corrupt input" in err
    # a corrupt chunk is named by its index in the file
    bad = bytearray(good)
    bad[-1] ^= 0x01
    packed.write_bytes(bytes(bad))
    code, _, err = _run(capsys, "decompress", packed, out)
    assert code == 1 and "chunk 3" in err


def test_unknown_model(tmp_path, capsys):
    src = tmp_path / "data.bin"
    src.write_bytes(b"abc" * 100)
    code, _, err = _run(capsys, "compress", src, tmp_path / "o", "--model", "no-such-model")
    assert code == 1 and "model not found" in err and "no-such-model" in err


def test_model_not_installed_at_decompress(tmp_path, capsys, monkeypatch):
    from conftest import install_fake_models

    src = tmp_path / "data.bin"
    src.write_bytes(lm_friendly(3000))
    packed = tmp_path / "p"
    assert _run(capsys, "compress", src, packed, "-q")[0] == 0
    install_fake_models(monkeypatch, {FAKE_OTHER.name: FAKE_OTHER})
    code, _, err = _run(capsys, "decompress", packed, tmp_path / "o")
    assert code == 1 and "model not found" in err


def test_usage_errors_exit_2(tmp_path, capsys):
    src = tmp_path / "data.bin"
    src.write_bytes(b"x")
    assert _run(capsys, "compress", src)[0] == 2
    assert _run(capsys, "compress", src, tmp_path / "o", "--dtype", "nonsense")[0] == 2
    assert _run(capsys, "compress", src, tmp_path / "o", "--chunk-size", "0")[0] == 2
    assert _run(capsys, "compress", src, tmp_path / "o", "--chunk-size", "lots")[0] == 2
    assert _run(capsys)[0] == 2
    assert _run(capsys, "frobnicate")[0] == 2


def test_same_input_and_output(tmp_path, capsys):
    src = tmp_path / "data.bin"
    src.write_bytes(b"xyz" * 10)
    code, _, err = _run(capsys, "compress", src, src)
    assert code == 1 and "same file" in err
    assert src.read_bytes() == b"xyz" * 10


def test_decompress_needs_no_default_model(tmp_path, capsys, monkeypatch):
    import lmcodec.codec as codec_mod
    from lmcodec.errors import ModelNotFoundError

    src = tmp_path / "data.bin"
    src.write_bytes(lm_friendly(3000))
    packed = tmp_path / "p"
    assert _run(capsys, "compress", src, packed, "-q")[0] == 0

    def no_default():
        raise ModelNotFoundError("no default model is installed")

    monkeypatch.setattr(codec_mod, "_default_model_name", no_default)
    code, _, err = _run(capsys, "decompress", packed, tmp_path / "o")
    assert code == 0, err
    assert (tmp_path / "o").read_bytes() == src.read_bytes()
    code, _, err = _run(capsys, "compress", src, packed)
    assert code == 1 and "no default model" in err
