"""Where models live and how they are found: the manifest of shipped models and model lookup.

A *model directory* holds ``manifest.json`` and one sub-directory per model with its two ONNX
graphs. The shipped one is ``onnx_models/`` of the repository (installed as the package
``lmcodec.onnx_models``); more directories can be listed in the environment variable
``LMCODEC_MODEL_PATH`` (``os.pathsep``-separated), searched first, e.g. for a model fine-tuned
on one dataset and kept next to that data.

Manifest entry (per model name)::

    model_id      16 hex digits: ``IntegerWeights.digest()[:8]``, a hash of the integer weights
                  and config (not of the ONNX bytes, so a faster re-export of the same integer
                  semantics keeps the id); stored in every chunk header, and a decoder only
                  ever uses the model with that id
    files         {"full": {"path", "sha256"}, "step": {...}, "weights": {...}}: the two graphs
                  and the integer weights (npz) they were built from; every sha256 is checked
                  when a model is loaded
    config        ModelConfig fields; n_parameters; description; training; validation
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from lmcodec.errors import LMCodecError, ModelNotFoundError
from lmcodec.model.spec import ModelConfig

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "onnx_models"
"""The repository's onnx_models/ (editable installs and checkouts)."""

_cache: dict[tuple[str, str], object] = {}
_cache_lock = threading.Lock()


class ModelIntegrityError(LMCodecError):
    """A model file does not match the sha256 recorded in its manifest."""


def _shipped_dir() -> Path:
    """onnx_models/ of a checkout or editable install, else the installed ``lmcodec.onnx_models``."""
    if (SHIPPED_DIR / "manifest.json").exists():
        return SHIPPED_DIR
    from importlib import resources

    try:
        return Path(str(resources.files("lmcodec.onnx_models")))
    except ModuleNotFoundError:
        return SHIPPED_DIR


def model_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("LMCODEC_MODEL_PATH", "").split(os.pathsep) if p]
    return extra + [_shipped_dir()]


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / "manifest.json"
    if not path.exists():
        return {"default": None, "models": {}}
    return json.loads(path.read_text())


def _entries() -> list[tuple[Path, str, dict]]:
    return [(d, name, e) for d in model_dirs() for name, e in read_manifest(d)["models"].items()]


def default_model_name() -> str:
    name = read_manifest(_shipped_dir()).get("default")
    if not name:
        raise ModelNotFoundError("no default model is installed (onnx_models/manifest.json has no 'default')")
    return name


def installed_models() -> dict[str, dict]:
    """name -> manifest entry, for every model directory (earlier directories win)."""
    out: dict[str, dict] = {}
    for _, name, entry in _entries():
        out.setdefault(name, entry)
    return out


def model_info(name_or_id: str | bytes | None = None) -> dict:
    """Manifest entry (plus ``name``) of a model given by name, id (bytes or hex) or None (default)."""
    directory, name, entry = _find(name_or_id)
    return {"name": name, **entry}


def model_weights_bytes(name_or_id: str | bytes | None = None) -> int:
    """Size in bytes of an installed model's integer weights file (``weights.npz``): what a user
    stores beside the data to decode it, counted in the paper's adjusted rate."""
    directory, _, entry = _find(name_or_id)
    return (directory / entry["files"]["weights"]["path"]).stat().st_size


def _find(name_or_id: str | bytes | None) -> tuple[Path, str, dict]:
    if name_or_id is None:
        name_or_id = default_model_name()
    key = name_or_id.hex() if isinstance(name_or_id, bytes) else name_or_id
    for directory, name, entry in _entries():
        if key in (name, entry["model_id"]):
            return directory, name, entry
    known = ", ".join(f"{n} ({e['model_id']})" for _, n, e in _entries()) or "none"
    raise ModelNotFoundError(f"model {key!r} is not installed; installed models: {known}. "
                             "Add the directory holding it to LMCODEC_MODEL_PATH.")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verified_file(directory: Path, name: str, entry: dict, role: str) -> Path:
    """Path of model file ``role`` ("full", "step", "weights"), checked against its sha256."""
    spec = entry["files"][role]
    path = directory / spec["path"]
    if not path.exists() or _sha256(path) != spec["sha256"]:
        raise ModelIntegrityError(f"model {name}: {path} is missing or does not match its sha256 in the manifest")
    return path


def load_weights(name_or_id: str | bytes | None = None):
    """The :class:`~lmcodec.model.weights.IntegerWeights` of an installed model (checked against
    its manifest sha256), e.g. to fine-tune it."""
    from lmcodec.model.weights import IntegerWeights

    return IntegerWeights.from_bytes(_verified_file(*_find(name_or_id), "weights").read_bytes())


def _load(name_or_id: str | bytes | None, device: str):
    from lmcodec.runtime import OnnxFrequencyModel

    directory, name, entry = _find(name_or_id)
    paths = {role: _verified_file(directory, name, entry, role) for role in ("full", "step", "weights")}
    return OnnxFrequencyModel(paths["full"], paths["step"], ModelConfig.from_dict(entry["config"]),
                              bytes.fromhex(entry["model_id"]), device=device)


def load_model(name: str | None = None, device: str = "auto"):
    """The model called ``name`` (None: the default), loaded once per process and device."""
    key = (name or default_model_name(), device)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _load(key[0], device)
        return _cache[key]


def load_model_by_id(model_id: bytes, device: str = "auto"):
    """The model whose 8-byte id is ``model_id``; ModelNotFoundError if none is installed."""
    _, name, _ = _find(bytes(model_id))
    return load_model(name, device)


def register_model(weights, name: str, training: dict, description: str = "", directory: Path | None = None) -> dict:
    """Export ``weights`` (IntegerWeights) as ``directory/name/{full,step}.onnx`` and record it in
    ``directory/manifest.json`` (default: the shipped onnx_models/). Returns the entry."""
    from lmcodec.model.export import build_full_graph, build_step_graph

    directory = Path(directory or SHIPPED_DIR)
    (directory / name).mkdir(parents=True, exist_ok=True)
    blobs = {"full": build_full_graph(weights).SerializeToString(),
             "step": build_step_graph(weights).SerializeToString(),
             "weights": weights.to_bytes()}
    files = {}
    for role, blob in blobs.items():
        rel = f"{name}/{role}.npz" if role == "weights" else f"{name}/{role}.onnx"
        (directory / rel).write_bytes(blob)
        files[role] = {"path": rel, "sha256": hashlib.sha256(blob).hexdigest()}
    manifest = read_manifest(directory)
    model_id = weights.digest()[:8].hex()
    previous = manifest["models"].get(name, {})
    entry = {
        "model_id": model_id,
        "files": files,
        "config": json.loads(weights.config.to_json()),
        "n_parameters": weights.n_parameters,
        "description": description,
        "training": training,
        # measured numbers stay only while they describe these very weights
        "validation": previous.get("validation", {}) if previous.get("model_id") == model_id else {},
    }
    manifest["models"][name] = entry
    if not manifest.get("default"):
        manifest["default"] = name
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return entry


def rebuild_graphs(name: str, directory: Path | None = None) -> dict:
    """Re-export model ``name``'s two ONNX graphs from its ``weights.npz`` with the current
    exporter and record their new sha256 in the manifest (default directory: the shipped
    onnx_models/). The model id, a digest of the integer weights, is unchanged: an exporter
    change may make the graphs faster, never change their integers (tests prove it).
    Returns the updated manifest entry."""
    from lmcodec.model.export import build_full_graph, build_step_graph
    from lmcodec.model.weights import IntegerWeights

    directory = Path(directory or SHIPPED_DIR)
    manifest = read_manifest(directory)
    entry = manifest["models"][name]
    weights_path = directory / entry["files"]["weights"]["path"]
    if _sha256(weights_path) != entry["files"]["weights"]["sha256"]:
        raise ModelIntegrityError(f"model {name}: {weights_path} does not match its sha256 in the manifest")
    weights = IntegerWeights.from_bytes(weights_path.read_bytes())
    if weights.digest()[:8].hex() != entry["model_id"]:
        raise ModelIntegrityError(f"model {name}: weights digest does not match the model id {entry['model_id']}")
    for role, build in (("full", build_full_graph), ("step", build_step_graph)):
        blob = build(weights).SerializeToString()
        (directory / entry["files"][role]["path"]).write_bytes(blob)
        entry["files"][role]["sha256"] = hashlib.sha256(blob).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    with _cache_lock:
        for key in [k for k in _cache if k[0] == name]:
            del _cache[key]
    return entry
