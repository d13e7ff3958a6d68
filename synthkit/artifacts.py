"""The model directory format: ``manifest.json`` + ``weights.safetensors`` + small JSON files.

The manifest records the format version, synthkit version, generator name, config, schema,
training-data fingerprint and the sha256 of every other file; it also carries a digest of its
own canonical content, so one changed byte anywhere in the directory fails loading. Writes go
to a temporary sibling directory that is renamed into place: never a half-written model.
No pickle, ever.

Encryption at rest is optional: with a 256-bit model key every file (weights, JSON) is sealed
with AES-256-GCM (a fresh nonce per file, the file name as associated data) and stored as
``<name>.enc``; the config, schema and fit report move from the manifest into a sealed
``manifest.sealed.json``. The manifest stays readable: it says that the model is encrypted and
with which key id (a hash of the key, never the key), so a wrong or missing key is a clear error.
Keys come from a key file (base64 text) or the ``SYNTHKIT_MODEL_KEY`` environment variable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthkit.errors import ArtifactError, IntegrityError, SinkExistsError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
#: Environment variable holding the base64 text of a 32-byte model key.
MODEL_KEY_ENV = "SYNTHKIT_MODEL_KEY"
ENCRYPTION = "AES-256-GCM"
SEALED_SUFFIX = ".enc"
SEALED_MANIFEST = "manifest.sealed.json"
#: Manifest fields left readable in an encrypted model; the rest is sealed.
PUBLIC_FIELDS = ("generator", "data_fingerprint", "created_at")
_NONCE_BYTES = 12
_KEY_BYTES = 32
_KEY_HINT = "Create a key with `synthkit keys generate-model-key --out model.key` (base64 of 32 random bytes)."

ModelKey = bytes | str | os.PathLike


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
    encrypt: bool = False,
    key: ModelKey | None = None,
) -> Path:
    """Write a model directory atomically and return its path.

    ``manifest`` holds the descriptive fields (generator, config, schema, ...); this function
    adds the format fields and file hashes. ``tensors`` go to ``weights.safetensors`` (always
    written, possibly empty); ``files`` maps a file name to a JSON-able object (written as
    sorted JSON) or to ``bytes`` written as given (e.g. an SDV pickle behind its trust flag).
    ``encrypt=True`` or a ``key`` seals every file with AES-256-GCM (see the module docstring);
    without ``key`` the key comes from ``SYNTHKIT_MODEL_KEY``.
    """
    from safetensors.numpy import save as st_save

    from synthkit import __version__

    dest = Path(path)
    if dest.exists() and not overwrite:
        raise SinkExistsError(f"Model directory already exists: {dest}")
    sealing_key = resolve_model_key(key, required=True) if (encrypt or key is not None) else None
    with staged_dir(dest, overwrite=overwrite) as tmp:
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
        if MANIFEST in contents or SEALED_MANIFEST in contents:
            raise ArtifactError(f"'{MANIFEST}' and '{SEALED_MANIFEST}' are reserved for the manifest.")
        if sealing_key is not None:  # encrypted in memory: no plaintext byte reaches the disk
            contents[SEALED_MANIFEST] = canonical_json(
                {k: v for k, v in manifest.items() if k not in PUBLIC_FIELDS}
            ).encode("utf-8")
            contents = {n + SEALED_SUFFIX: _seal(sealing_key, n, b) for n, b in contents.items()}
            manifest = {k: v for k, v in manifest.items() if k in PUBLIC_FIELDS}
            manifest["encryption"] = {"algorithm": ENCRYPTION, "key_id": model_key_id(sealing_key)}
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
    return dest


@contextmanager
def staged_dir(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory in a hidden staging folder beside ``path``; it takes ``path``'s place only
    when the block succeeds (a failure leaves the old directory, or none, and no staging folder)."""
    dest = Path(path)
    if dest.exists() and not overwrite:
        raise SinkExistsError(f"Model directory already exists: {dest}",
                              hint="Pass overwrite=True or choose another path.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
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


def write_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write a composite model's state JSON with its digest, in canonical form."""
    full = dict(state)
    full["digest"] = sha256_bytes(canonical_json(full).encode())
    Path(path).write_text(canonical_json(full), encoding="utf-8")


def read_state(path: str | Path, *, format_version: int, what: str, hint: str) -> dict[str, Any]:
    """Read what :func:`write_state` wrote; a missing file, a changed byte or another format
    version is an :class:`ArtifactError` (``what`` names the model kind, ``hint`` how to make one)."""
    state_path = Path(path)
    if not state_path.is_file():
        raise ArtifactError(f"{state_path.parent} is not a {what} directory (no {state_path.name}).", hint=hint)
    state = json.loads(state_path.read_text(encoding="utf-8"))
    digest = state.pop("digest", None)
    if digest != sha256_bytes(canonical_json(state).encode()):
        raise ArtifactError(f"{state_path} does not match its digest: it was changed after saving.")
    if state.get("format_version") != format_version:
        raise ArtifactError(f"{state_path} has format version {state.get('format_version')}; "
                            f"this synthkit reads {format_version}.")
    return state


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


def read_model_dir(path: str | Path, *, key: ModelKey | None = None) -> ModelArtifact:
    """Read a model directory, checking the sha256 of every file against the manifest.

    An encrypted model needs its key: ``key`` (bytes, base64 text or a key file path) or
    ``SYNTHKIT_MODEL_KEY``; ``key`` is ignored for a model that is not encrypted.
    """
    from safetensors.numpy import load as st_load

    root = Path(path)
    manifest = read_manifest(root)
    files: dict[str, str] = manifest.get("files", {})
    encryption = manifest.get("encryption")
    weights = WEIGHTS + SEALED_SUFFIX if encryption else WEIGHTS
    if weights not in files:
        raise ArtifactError(f"{root} lists no {weights}; synthkit models always have one.")
    opening_key = _key_for(root, encryption, key) if encryption else None
    blobs: dict[str, bytes] = {}
    for name, digest in files.items():
        fpath = root / name
        if not fpath.is_file():
            raise IntegrityError(f"{fpath} is listed in the manifest but missing.")
        blob = fpath.read_bytes()
        if sha256_bytes(blob) != digest:
            raise IntegrityError(f"{fpath} does not match the sha256 in the manifest.")
        blobs[name] = blob
    if opening_key is not None:
        blobs = {
            n[: -len(SEALED_SUFFIX)]: _open(opening_key, n[: -len(SEALED_SUFFIX)], b, root)
            for n, b in blobs.items()
        }
        sealed = json.loads(blobs.pop(SEALED_MANIFEST, b"{}"))
        manifest = {**manifest, **sealed}
    tensors = st_load(blobs.pop(WEIGHTS))
    parsed: dict[str, Any] = {}
    for name, blob in blobs.items():
        parsed[name] = json.loads(blob) if name.endswith(".json") else blob
    return ModelArtifact(manifest=manifest, tensors=tensors, files=parsed, path=root)


def manifest_hash(path: str | Path) -> str:
    """sha256 of a model's manifest (which pins every other file): the model's identity."""
    read_manifest(path)
    return sha256_file(Path(path) / MANIFEST)


# --- encryption at rest ---------------------------------------------------------------------
def generate_model_key() -> bytes:
    """32 random bytes: a new AES-256-GCM model key."""
    return secrets.token_bytes(_KEY_BYTES)


def model_key_id(key: bytes) -> str:
    """A short, one-way id of a model key (sha256 of a prefix and the key): names it, never reveals it."""
    return hashlib.sha256(b"synthkit-model-key\0" + key).hexdigest()[:16]


def write_model_key(path: str | Path, *, overwrite: bool = False) -> tuple[Path, str]:
    """Write a new model key as base64 text to ``path`` (mode 0600, atomically); return path and key id."""
    dest = Path(path)
    if dest.exists() and not overwrite:
        raise SinkExistsError(
            f"Key file already exists: {dest}.",
            hint="Keep it (models encrypted with it cannot be opened without it), choose another "
            "path, or pass overwrite=True (CLI: --overwrite).",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    key = generate_model_key()
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64encode(key) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest, model_key_id(key)


def resolve_model_key(key: ModelKey | None, *, required: bool = False) -> bytes | None:
    """The 32 key bytes from ``key`` (bytes, base64 text, or a key file path) or SYNTHKIT_MODEL_KEY."""
    if key is None:
        env = os.environ.get(MODEL_KEY_ENV)
        if not env:
            if required:
                raise ArtifactError(
                    f"Encryption was asked for, but no model key was given and {MODEL_KEY_ENV} is not set.",
                    hint=f"Pass key= (a key file path) or set {MODEL_KEY_ENV}. {_KEY_HINT}",
                )
            return None
        return _decode_key(env, f"the environment variable {MODEL_KEY_ENV}")
    if isinstance(key, (bytes, bytearray)):
        if len(key) != _KEY_BYTES:
            raise ArtifactError(f"A model key must be {_KEY_BYTES} bytes, got {len(key)}.", hint=_KEY_HINT)
        return bytes(key)
    if isinstance(key, os.PathLike) or _is_file(key):
        kpath = Path(key)
        if not kpath.is_file():
            raise ArtifactError(f"No model key file at {kpath}.", hint=_KEY_HINT)
        return _decode_key(kpath.read_text(encoding="ascii", errors="replace"), f"the key file {kpath}")
    return _decode_key(str(key), "the key text")


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # too long, or a NUL byte: not a path
        return False


def _decode_key(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip().encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raw = b""
    if len(raw) != _KEY_BYTES:
        raise ArtifactError(f"{where[0].upper() + where[1:]} does not hold a model key "
                            f"(base64 text of {_KEY_BYTES} bytes).", hint=_KEY_HINT)
    return raw


def _key_for(root: Path, encryption: Any, key: ModelKey | None) -> bytes:
    """The key that opens the encrypted model at ``root``: present, and the one it was sealed with."""
    if not isinstance(encryption, dict) or encryption.get("algorithm") != ENCRYPTION:
        raise ArtifactError(f"{root} is encrypted with an unknown scheme: {encryption!r}.",
                            hint="Upgrade synthkit to the version that wrote it.")
    wanted = encryption.get("key_id")
    found = resolve_model_key(key)
    if found is None:
        raise ArtifactError(
            f"{root} is encrypted (model key id {wanted}) and no key was given.",
            hint=f"Pass its key: key=PATH to synthkit.load (CLI: --key-file PATH), or set "
            f"{MODEL_KEY_ENV} to the base64 key.",
        )
    if model_key_id(found) != wanted:
        raise ArtifactError(
            f"Wrong model key for {root}: it was encrypted with key id {wanted}, the key given "
            f"has id {model_key_id(found)}.",
            hint="Use the key file the model was saved with; without it the model cannot be opened.",
        )
    return found


def _aad(name: str) -> bytes:
    return f"synthkit-model/{FORMAT_VERSION}/{name}".encode()


def _seal(key: bytes, name: str, blob: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, blob, _aad(name))


def _open(key: bytes, name: str, blob: bytes, root: Path) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(name))
    except InvalidTag as exc:
        raise IntegrityError(f"{root / (name + SEALED_SUFFIX)} does not decrypt with the model key: "
                             "it was changed, or sealed with another key.") from exc
