"""The model directory format: ``manifest.json`` + ``weights.safetensors`` + small JSON files.

The manifest records the format version, synthkit version, generator name, config, schema,
training-data fingerprint and the sha256 of every other file; it also carries a digest of its
own canonical content, so one changed byte anywhere in the directory fails loading. Writes go
to a temporary sibling directory that is renamed into place: never a half-written model.
No pickle, ever.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthkit.errors import ArtifactError, IntegrityError, SinkExistsError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and fixed separators: the form that is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


@dataclass
class ModelArtifact:
    """What a model directory holds, once its hashes are checked."""

    manifest: dict[str, Any]
    tensors: dict[str, np.ndarray]
    files: dict[str, Any] = field(default_factory=dict)  # name -> parsed JSON
    path: Path | None = None

    @property
    def generator(self) -> str:
        return str(self.manifest["generator"])


def write_model_dir(
    path: str | Path,
    *,
    manifest: dict[str, Any],
    tensors: dict[str, np.ndarray],
    files: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model directory atomically and return its path.

    ``manifest`` holds the descriptive fields (generator, config, schema, ...); this function
    adds the format fields and file hashes. ``tensors`` go to ``weights.safetensors`` (always
    written, possibly empty); ``files`` maps a file name to a JSON-able object (written as
    sorted JSON) or to ``bytes`` written as given (e.g. an SDV pickle behind its trust flag).
    """
    from safetensors.numpy import save as st_save

    from synthkit import __version__

    dest = Path(path)
    if dest.exists() and not overwrite:
        raise SinkExistsError(f"Model directory already exists: {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        contents: dict[str, bytes] = {
            WEIGHTS: st_save(
                {k: np.ascontiguousarray(v).reshape(np.shape(v)) for k, v in tensors.items()}
            )
        }
        for name, obj in (files or {}).items():
            if isinstance(obj, bytes):
                contents[name] = obj
            else:
                text = json.dumps(obj, sort_keys=True, indent=1, allow_nan=False)
                contents[name] = (text + "\n").encode()
        if MANIFEST in contents:
            raise ArtifactError(f"'{MANIFEST}' is reserved for the manifest itself.")
        for name, blob in contents.items():
            (tmp / name).write_bytes(blob)
        full = {
            **manifest,
            "format_version": FORMAT_VERSION,
            "synthkit_version": __version__,
            "files": {name: sha256_bytes(blob) for name, blob in sorted(contents.items())},
        }
        full["digest"] = sha256_bytes(canonical_json(full).encode())
        (tmp / MANIFEST).write_text(canonical_json(full), encoding="utf-8")
        if dest.exists():
            backup = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(dest, backup)
            os.replace(tmp, dest)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and verify ``manifest.json`` alone (its own digest and canonical form)."""
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(
            f"No model directory at {root}.",
            hint="Pass the directory that `synthkit train --out` or Generator.save() wrote.",
        )
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{root} has no {MANIFEST}; it is not a synthkit model directory.")
    raw = mpath.read_bytes()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{mpath} is not valid JSON: it was changed or corrupted.") from exc
    if not isinstance(manifest, dict) or "digest" not in manifest:
        raise IntegrityError(f"{mpath} has no digest: it was changed or is not ours.")
    claimed = manifest.pop("digest")
    if sha256_bytes(canonical_json(manifest).encode()) != claimed:
        raise IntegrityError(f"{mpath} does not match its digest: it was changed after saving.")
    manifest["digest"] = claimed
    if canonical_json(manifest).encode("utf-8") != raw:
        raise IntegrityError(f"{mpath} is not in its canonical form: it was changed after saving.")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"Model format version {version} is not supported (this synthkit reads {FORMAT_VERSION}).",
            hint="Re-save the model with the synthkit version that wrote it, or upgrade synthkit.",
        )
    return manifest


def read_model_dir(path: str | Path) -> ModelArtifact:
    """Read a model directory, checking the sha256 of every file against the manifest."""
    from safetensors.numpy import load as st_load

    root = Path(path)
    manifest = read_manifest(root)
    files: dict[str, str] = manifest.get("files", {})
    if WEIGHTS not in files:
        raise ArtifactError(f"{root} lists no {WEIGHTS}; synthkit models always have one.")
    blobs: dict[str, bytes] = {}
    for name, digest in files.items():
        fpath = root / name
        if not fpath.is_file():
            raise IntegrityError(f"{fpath} is listed in the manifest but missing.")
        blob = fpath.read_bytes()
        if sha256_bytes(blob) != digest:
            raise IntegrityError(f"{fpath} does not match the sha256 in the manifest.")
        blobs[name] = blob
    tensors = st_load(blobs.pop(WEIGHTS))
    parsed: dict[str, Any] = {}
    for name, blob in blobs.items():
        parsed[name] = json.loads(blob) if name.endswith(".json") else blob
    return ModelArtifact(manifest=manifest, tensors=tensors, files=parsed, path=root)


def manifest_hash(path: str | Path) -> str:
    """sha256 of a model's manifest (which pins every other file): the model's identity."""
    read_manifest(path)
    return sha256_file(Path(path) / MANIFEST)
