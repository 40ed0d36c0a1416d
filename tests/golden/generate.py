"""Write the golden chunk vectors of tests/golden/ (run once, when a format version is frozen).

    python tests/golden/generate.py            # writes only the vectors that are missing
    python tests/golden/generate.py --force    # rewrites all: only when deliberately re-freezing

Format version 1 vectors were written by the model-only encoder (``mix=False``, mode ``lm``);
version 2 added mode ``lm_mix`` (the ``v2_*`` vectors, ``"format_version": 2``, mixer version 1);
version 3 added mixer version 2 to it (the ``v3_*`` vectors: several streams per plane, one of
them stored raw, so the shared statistics and raw streams feeding them are pinned); version 4
added mixer version 3 (the ``v4_*`` vectors, the same inputs and settings as ``v3_*``); version 5
added the decimal step (the ``v5_*`` vectors: float64 prices as int64 cents under mixer versions 3
and 1, big-endian float32 with exceptions). Each
``lm_mix`` vector's config names its mixer version (``mixer_version``): the encoder still
writes every one on request, so the older vectors pin the older writers too.

The encoder's *policy* (which layout and transform it picks) is not part of the format. When a
policy change makes a fresh encode differ from a committed vector, the vector stays (it must
decode forever), gets ``"reencodes": false`` and a note, and a new vector pins the new policy.

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
    tiny = {"model": "lm-tiny-v1", "mix": False}
    small = {"model": "lm-small-v1", "mix": False}
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
        **_vectors_v2(),
        **_vectors_v3(),
        **_vectors_v4(),
        **_vectors_v5(),
    }


def _lm_mix_inputs():
    """The inputs of the lm_mix vectors (every format version codes the same bytes)."""
    return (
        _corpus_slice("text/gcide", 101_500, 103_548),
        np.random.default_rng(2026112302).integers(0, 256, 512, dtype=np.uint8),
        _corpus_slice("audio/alsa-Front_Center", 2_800, 3_824),
        _corpus_slice("sensor/matplotlib-mri-s1045", 3_700, 4_340),
        _corpus_slice("float64/matplotlib-goog", 200, 456),
    )


def _vectors_v2() -> dict[str, tuple[np.ndarray, dict, str, str]]:
    """Format version 2: mode lm_mix (several streams, raw streams, a record length)."""
    tiny = {"model": "lm-tiny-v1", "segment_length": 256, "stream_length": 512, "mixer_version": 1}
    small = {"model": "lm-small-v1", "stream_length": 1024, "mixer_version": 1}
    (text, text_src), noise, (audio, audio_src), (mri, mri_src), (goog, goog_src) = _lm_mix_inputs()
    return {
        "v2_text_noise_tiny": (np.concatenate([text, noise]), tiny, "lm_mix",
                               f"{text_src}, then 512 bytes of numpy default_rng(2026112302) noise "
                               "(a raw stream)"),
        "v2_audio_int16": (audio, small, "lm_mix", audio_src),
        "v2_audio_int16_seg512": (audio, small, "lm_mix",
                                  f"{audio_src}; the same bytes and config as v2_audio_int16, written after "
                                  "lm_mix's default segment length became 512 (codec.MIX_SEGMENT_LENGTH)"),
        "v2_mri_uint16_rows": (mri.reshape(32, 20), {**tiny, "stream_length": 256}, "lm_mix",
                               f"{mri_src}; coded as a (32, 20) array: record length 20"),
        "v2_goog_float64": (goog, small, "lm_mix", goog_src),
        "v2_goog_float64_plain": (goog, small, "lm_mix",
                                  f"{goog_src}; the same bytes as v2_goog_float64, written after the "
                                  "encoder learned to code floats as plain bytes (header dtype none)"),
    }


def _vectors_v3() -> dict[str, tuple[np.ndarray, dict, str, str]]:
    """Format version 3: lm_mix with mixer version 2 (the streams of a plane share statistics)."""
    tiny = {"model": "lm-tiny-v1", "segment_length": 256, "stream_length": 512, "mixer_version": 2}
    small = {"model": "lm-small-v1", "segment_length": 256, "stream_length": 256, "mixer_version": 2}
    (text, text_src), noise, (audio, audio_src), (mri, mri_src), (goog, goog_src) = _lm_mix_inputs()
    return {
        "v3_text_noise_tiny": (np.concatenate([text, noise]), tiny, "lm_mix",
                               f"{text_src}, then 512 bytes of numpy default_rng(2026112302) noise "
                               "(5 streams of one plane, the last stored raw)"),
        "v3_audio_int16": (audio, small, "lm_mix", f"{audio_src} (4 streams per plane)"),
        "v3_mri_uint16_rows": (mri.reshape(32, 20), {**tiny, "stream_length": 256}, "lm_mix",
                               f"{mri_src}; coded as a (32, 20) array: record length 20 (3 streams per plane)"),
        "v3_goog_float64": (goog, small, "lm_mix", f"{goog_src} (coded as plain bytes: 8 streams)"),
        "v3_audio_int16_zz": (audio, small, "lm_mix", f"{audio_src}; the same bytes as v3_audio_int16, "
                              "written after the encoder learned the zigzag transforms (delta_zz)"),
    }


def _vectors_v4() -> dict[str, tuple[np.ndarray, dict, str, str]]:
    """Format version 4: lm_mix with mixer version 3 (order-4 and order-6 contexts), on the
    inputs and settings of the current-policy ``v3_*`` vectors."""
    v3 = _vectors_v3()
    return {"v4_" + name[3:]: (array, {**config, "mixer_version": 3}, mode, source)
            for name, (array, config, mode, source) in v3.items()
            if name in ("v3_text_noise_tiny", "v3_audio_int16_zz", "v3_mri_uint16_rows", "v3_goog_float64")}


def _vectors_v5() -> dict[str, tuple[np.ndarray, dict, str, str]]:
    """Format version 5: lm_mix chunks with a decimal step (lmcodec.decimals)."""
    small = {"model": "lm-small-v1", "segment_length": 256, "stream_length": 256}
    *_, (goog, goog_src) = _lm_mix_inputs()
    etopo, etopo_src = _corpus_slice("float32/ferret-etopo5-ROSE", 500_400, 501_000)
    etopo = etopo.astype(">f4")
    etopo[[7, 100, 101, 599]] = [np.nan, -0.0, np.inf, 1 / 3]
    return {
        "v5_goog_float64": (goog.reshape(64, 4), {**small, "mixer_version": 3}, "lm_mix",
                            f"{goog_src}; coded as a (64, 4) array: prices as int64 cents (exponent 2)"),
        "v5_goog_float64_mixer1": (goog.reshape(64, 4), {**small, "mixer_version": 1}, "lm_mix",
                                   f"{goog_src}; as v5_goog_float64 with mixer version 1 (the fast preset's)"),
        "v5_etopo_float32_exceptions": (etopo, {**small, "model": "lm-tiny-v1", "mixer_version": 3}, "lm_mix",
                                        f"{etopo_src}; as big-endian float32, elements 7, 100, 101 and 599 "
                                        "set to NaN, -0.0, inf and 1/3 (four decimal exceptions)"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    index_path = HERE / "vectors.json"
    index = {} if args.force or not index_path.exists() else json.loads(index_path.read_text())
    for name, (array, config, mode, source) in _vectors().items():
        if name in index:
            continue
        codec = LMCodec(**config)
        encoded = codec.encode(array)
        header = parse_header(encoded)
        got = header.mode.name.lower()
        if got != mode:
            raise SystemExit(f"{name}: expected mode {mode}, the encoder chose {got}")
        if name.startswith("v5_") and header.version != 5:
            raise SystemExit(f"{name}: expected a decimal step (format version 5), got version {header.version}")
        (HERE / f"{name}.raw").write_bytes(array.tobytes())
        (HERE / f"{name}.lmc").write_bytes(encoded)
        index[name] = {
            "codec": codec.get_config(),
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "mode": mode,
            "model_id": header.model_id.hex(),
            "raw_bytes": array.nbytes,
            "encoded_bytes": len(encoded),
            "source": source,
            "format_version": header.version,
        }
        print(f"{name:18s} {mode:4s} {array.nbytes:6d} -> {len(encoded):6d} bytes")
    if "container_mri" not in index:
        _write_container(index)
    index_path.write_text(json.dumps(index, indent=2) + "\n")


def _write_container(index: dict) -> None:
    """One file container (lmcodec compress) holding an .npy array in two chunks."""
    mri = np.frombuffer((HERE / "mri_uint16_tiny.raw").read_bytes(), np.uint16).reshape(35, 20)
    np.save(HERE / "container_mri.npy", mri)
    cli_args = ["compress", "-q", "--model", "lm-tiny-v1", "--chunk-size", "800", "--no-mix",
                str(HERE / "container_mri.npy"), str(HERE / "container_mri.lmcf")]
    from lmcodec.cli import main as cli_main

    if cli_main(cli_args):
        raise SystemExit("lmcodec compress failed")
    index["container_mri"] = {"cli": cli_args[:7], "source": "mri_uint16_tiny.raw as a (35, 20) uint16 .npy"}


if __name__ == "__main__":
    main()
