"""Write the golden chunk vectors of tests/golden/ (run once, when a format version is frozen).

    python tests/golden/generate.py            # refuses to overwrite existing vectors
    python tests/golden/generate.py --force    # only when deliberately re-freezing

Each vector is ``NAME.raw`` (the input bytes), ``NAME.lmc`` (the encoded chunk) and an entry in
``vectors.json`` (codec config, dtype and shape of the input, expected mode, model id, where the
bytes came from). The raw bytes are committed, so the test needs none of the corpus packages;
the real-data vectors were cut from corpus samples (lmcodec.corpus, validation split).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lmcodec import LMCodec
from lmcodec.format import parse_header

HERE = Path(__file__).resolve().parent


def _corpus_slice(name: str, start: int, stop: int) -> tuple[np.ndarray, str]:
    from lmcodec.corpus import load_samples

    for sample in load_samples("val"):
        if sample.name == name:
            return sample.array.reshape(-1)[start:stop].copy(), f"{sample.source}; elements [{start}:{stop}]"
    raise LookupError(name)


def _vectors() -> dict[str, tuple[np.ndarray, dict, str, str]]:
    """name -> (array, codec config, expected mode, provenance)."""
    rng = np.random.default_rng(20261123)
    tiny = {"model": "lm-tiny-v1"}
    small = {"model": "lm-small-v1"}
    text, text_src = _corpus_slice("text/gcide", 100_000, 101_500)
    audio, audio_src = _corpus_slice("audio/alsa-Front_Center", 2_000, 2_800)
    mri, mri_src = _corpus_slice("sensor/matplotlib-mri-s1045", 3_000, 3_700)
    etopo, etopo_src = _corpus_slice("float32/ferret-etopo5-ROSE", 500_000, 500_400)
    goog, goog_src = _corpus_slice("float64/matplotlib-goog", 0, 200)
    return {
        "empty": (np.zeros(0, np.uint8), small, "raw", "no bytes"),
        "random_raw": (rng.integers(0, 256, 257, dtype=np.uint8), small, "raw", "numpy default_rng(20261123)"),
        "repeats_zstd": (np.frombuffer(b"lmcodec golden " * 40, np.uint8).copy(), small, "zstd", "a repeated phrase"),
        "text_tiny_seg512": (text, {**tiny, "segment_length": 512}, "lm", text_src),
        "audio_int16": (audio, small, "lm", audio_src),
        "mri_uint16_tiny": (mri, tiny, "lm", mri_src),
        "etopo_float32": (etopo, small, "lm", etopo_src),
        "goog_float64": (goog, small, "lm", goog_src),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    index_path = HERE / "vectors.json"
    if index_path.exists() and not args.force:
        raise SystemExit(f"{index_path} exists: golden vectors are frozen (use --force to re-freeze)")
    index = {}
    for name, (array, config, mode, source) in _vectors().items():
        codec = LMCodec(**config)
        encoded = codec.encode(array)
        header = parse_header(encoded)
        got = header.mode.name.lower()
        if got != mode:
            raise SystemExit(f"{name}: expected mode {mode}, the encoder chose {got}")
        (HERE / f"{name}.raw").write_bytes(array.tobytes())
        (HERE / f"{name}.lmc").write_bytes(encoded)
        index[name] = {
            "codec": codec.get_config(),
            "dtype": array.dtype.str,
            "mode": mode,
            "model_id": header.model_id.hex(),
            "raw_bytes": array.nbytes,
            "encoded_bytes": len(encoded),
            "source": source,
        }
        print(f"{name:18s} {mode:4s} {array.nbytes:6d} -> {len(encoded):6d} bytes")
    # one file container (lmcodec compress) holding an .npy array in two chunks
    mri = np.frombuffer((HERE / "mri_uint16_tiny.raw").read_bytes(), np.uint16).reshape(35, 20)
    np.save(HERE / "container_mri.npy", mri)
    cli_args = ["compress", "-q", "--model", "lm-tiny-v1", "--chunk-size", "800",
                str(HERE / "container_mri.npy"), str(HERE / "container_mri.lmcf")]
    from lmcodec.cli import main as cli_main

    if cli_main(cli_args):
        raise SystemExit("lmcodec compress failed")
    index["container_mri"] = {"cli": cli_args[:6], "source": "mri_uint16_tiny.raw as a (35, 20) uint16 .npy"}
    index_path.write_text(json.dumps(index, indent=2) + "\n")


if __name__ == "__main__":
    main()
