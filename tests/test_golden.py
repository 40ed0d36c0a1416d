"""Golden vectors (tests/golden/): chunks and a file container encoded when format versions 1
to 5 were frozen (``v2_*``: mode lm_mix with mixer version 1; ``v3_*``: mixer version 2;
``v4_*``: mixer version 3; ``v5_*``: the decimal step, with mixer versions 3 and 1).

They must decode to their committed raw bytes forever, and a fresh encode with the recorded
codec config must reproduce them byte for byte (the format, the shipped models, the mixer and
the coder are frozen). Version-1 vectors were written before the ``mix`` option existed, by the
model-only encoder, i.e. ``mix=False``. The one exception is re-encoding a zstd-mode chunk: its body is whatever the
bundled libzstd emits, which may change between numcodecs releases without changing the format
(any zstd decoder reads it), so for that mode only decoding is pinned. Likewise a vector
marked ``"reencodes": false`` was written under an earlier encoder policy (which layout and
transform to pick, not part of the format); a newer vector pins the current policy. The
``lm_mix`` vectors of every version re-encode with the ``mixer_version`` in their config (the
encoder writes older mixer versions on request), except those two policy changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmcodec import LMCodec
from lmcodec.cli import main as cli_main
from lmcodec.format import parse_header

GOLDEN = Path(__file__).resolve().parent / "golden"
INDEX = json.loads((GOLDEN / "vectors.json").read_text())
CHUNKS = sorted(name for name, entry in INDEX.items() if "codec" in entry)

pytestmark = pytest.mark.real_models


def _load(name: str) -> tuple[bytes, bytes, dict]:
    return (GOLDEN / f"{name}.raw").read_bytes(), (GOLDEN / f"{name}.lmc").read_bytes(), INDEX[name]


@pytest.mark.parametrize("name", CHUNKS)
def test_golden_chunk_decodes(name):
    raw, encoded, entry = _load(name)
    header = parse_header(encoded)
    assert header.mode.name.lower() == entry["mode"]
    assert header.model_id.hex() == entry["model_id"]
    assert header.raw_length == len(raw)
    # decoding needs no configuration: the header names the model
    assert LMCodec().decode(encoded) == raw
    out = np.empty(len(raw), np.uint8)
    LMCodec().decode(encoded, out=out)
    assert out.tobytes() == raw


@pytest.mark.parametrize("name", [n for n in CHUNKS if INDEX[n]["mode"] != "zstd" and INDEX[n].get("reencodes", True)])
def test_golden_chunk_reencodes_identically(name):
    raw, encoded, entry = _load(name)
    array = np.frombuffer(raw, dtype=np.dtype(entry["dtype"])).reshape(entry.get("shape", -1))
    config = {"mix": False, **entry["codec"]}  # v1 vectors: written before mix existed
    assert parse_header(encoded).version == entry.get("format_version", 1)
    assert LMCodec.from_config(config).encode(array) == encoded


def test_golden_chunks_decode_as_one_batch():
    """The pooled batch decode path gives the same bytes as one chunk at a time."""
    loaded = [_load(name) for name in CHUNKS]
    decoded = LMCodec().decode_batch([encoded for _, encoded, _ in loaded])
    assert [bytes(d) for d in decoded] == [raw for raw, _, _ in loaded]


def test_golden_file_container(tmp_path):
    entry = INDEX["container_mri"]
    restored = tmp_path / "restored.npy"
    assert cli_main(["decompress", "-q", str(GOLDEN / "container_mri.lmcf"), str(restored)]) == 0
    assert restored.read_bytes() == (GOLDEN / "container_mri.npy").read_bytes()
    again = tmp_path / "again.lmcf"
    assert cli_main([*entry["cli"], str(GOLDEN / "container_mri.npy"), str(again)]) == 0
    assert again.read_bytes() == (GOLDEN / "container_mri.lmcf").read_bytes()
