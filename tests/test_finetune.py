"""Per-dataset fine-tuning: reading user arrays, the row split, weight import, the adjusted rate,
and one short end-to-end ``lmcodec train finetune`` on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmcodec import LMCodec
from lmcodec.finetune import (
    adjusted_rate,
    break_even_bytes,
    model_path,
    open_array,
    split_rows,
    validation_blocks,
)
from lmcodec.models import ModelNotFoundError, load_weights


def _signal(n: int) -> np.ndarray:
    t = np.arange(n)
    return (3000 * np.sin(t / 7.0) + np.random.default_rng(0).integers(-40, 40, n)).astype("<i2")


def test_open_array_reads_npy_zarr_and_hdf5(tmp_path):
    zarr = pytest.importorskip("zarr")
    h5py = pytest.importorskip("h5py")
    big, small = _signal(4000).reshape(400, 10), np.arange(10, dtype="<f4")
    np.save(tmp_path / "a.npy", big)
    assert np.array_equal(open_array(tmp_path / "a.npy"), big)
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("small", data=small)
    group.create_array("big", data=big)
    assert np.array_equal(open_array(tmp_path / "g.zarr")[:], big)  # the largest by default
    assert np.array_equal(open_array(tmp_path / "g.zarr", "small")[:], small)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["grp/big"] = big
        f["small"] = small
    assert np.array_equal(open_array(tmp_path / "f.h5")[:], big)
    with pytest.raises(KeyError, match="no array 'nope'"):
        open_array(tmp_path / "f.h5", "nope")
    (tmp_path / "x.txt").write_text("not an array")
    with pytest.raises(ValueError, match="not an .npy file"):
        open_array(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError):
        open_array(tmp_path / "missing.npy")


def test_split_rows_holds_out_the_last_rows():
    array = np.arange(200_000, dtype="<i4").reshape(20_000, 10)  # 40-byte rows
    blocks, holdout = split_rows(array, sample_bytes=200_000, holdout_bytes=80_000)
    assert holdout.shape == (2000, 10) and holdout[0, 0] == 18_000 * 10
    assert all(b.shape[1:] == (10,) and b.max() < holdout.min() for b in blocks)
    starts = [int(b[0, 0]) // 10 for b in blocks]
    assert starts == sorted(starts) and starts[0] == 0
    assert 200_000 <= sum(b.nbytes for b in blocks) < 200_000 + blocks[0].nbytes
    val = validation_blocks(holdout)  # 8 KiB blocks spread over the 80 KB held out
    assert len(val) == 8 and val[0][0, 0] == holdout[0, 0] and val[-1][-1, -1] == holdout[-1, -1]
    assert all(b.nbytes == 8160 for b in val)  # whole 40-byte rows
    with pytest.raises(ValueError, match="two rows"):
        split_rows(np.zeros((1, 5)), 100, 100)


def test_integer_weights_import_is_exact():
    torch = pytest.importorskip("torch")  # noqa: F841
    from lmcodec.model.qat import QATModel

    weights = load_weights("lm-tiny-v1")
    again = QATModel.from_integer_weights(weights).to_integer_weights()
    assert again.digest() == weights.digest()


def test_adjusted_rate_and_break_even():
    assert adjusted_rate(2.0, 1000, np.array([8000.0]))[0] == pytest.approx(3.0)
    assert break_even_bytes(3.0, 2.0, 1000) == pytest.approx(8000.0)
    assert break_even_bytes(2.0, 2.5, 1000) is None


@pytest.mark.real_models
def test_finetune_end_to_end(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    from lmcodec.cli import main as cli_main

    np.save(tmp_path / "signal.npy", _signal(40_000))
    out = tmp_path / "models"
    args = ["train", "finetune", "--from", str(tmp_path / "signal.npy"), "--name", "signal-ft", "--out", str(out),
            "--base", "lm-tiny-v1", "--minutes", "0.05", "--sample-bytes", "32768", "--holdout-bytes", "4096",
            "--batch", "2", "--window", "64", "--eval-every", "1000"]
    assert cli_main(args) == 0
    report = json.loads((out / "signal-ft.report.json").read_text())
    assert report["source"]["holdout_bytes"] == 4096 and report["source"]["dataset_bytes"] == 80_000
    assert report["base"]["model"] == "lm-tiny-v1" and report["tuned"]["model"] == "signal-ft"
    alone = report["model_alone"]["tuned"]
    assert alone["model"] == "signal-ft" and not alone["mix"] and sum(alone["modes"].values()) == 1
    assert report["tuned_model_bytes"] == (out / "signal-ft" / "weights.npz").stat().st_size
    assert (out / "signal-ft.adjusted-rate.png").stat().st_size > 10_000
    assert "adjusted rate on the whole dataset" in capsys.readouterr().out
    # the new model lives in OUT only: chunks coded with it decode where OUT is on the path
    chunk = _signal(3000)
    with model_path(out):
        encoded = LMCodec(model="signal-ft").encode(chunk)
        assert LMCodec().decode(encoded) == chunk.tobytes()
    with pytest.raises(ModelNotFoundError, match="LMCODEC_MODEL_PATH"):
        LMCodec().decode(encoded)
