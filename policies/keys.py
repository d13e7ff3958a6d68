"""Ed25519 signing keys for audit records: generate, load, identify.

Private keys are PKCS8 PEM, encrypted when a passphrase is given, and are created with mode
0600 from the first byte (never written world-readable and narrowed afterwards). Public keys
are SubjectPublicKeyInfo PEM. A key's id is the first 16 hex characters of the sha256 of its
raw public bytes: short enough to print, and stored in every record it signs.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from synthkit.errors import AuditError, SinkExistsError

PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"


@dataclass(frozen=True)
class KeyPair:
    """Where a generated key pair was written, and its key id."""

    private_path: Path
    public_path: Path
    key_id: str


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """First 16 hex chars of sha256 over the raw public key: names the key in audit records."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _passphrase_bytes(passphrase: str | bytes | None) -> bytes | None:
    if passphrase is None:
        return None
    data = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not data:
        raise AuditError(
            "The passphrase is empty.",
            hint="Pass a non-empty passphrase, or none at all for an unencrypted key.",
        )
    return data


def generate_keypair(
    directory: str | Path,
    *,
    name: str = "synthkit",
    passphrase: str | bytes | None = None,
    overwrite: bool = False,
) -> KeyPair:
    """Write a new Ed25519 key pair as ``<name>.key`` (private, 0600) and ``<name>.pub``.

    Existing keys are never replaced unless ``overwrite=True``: losing a private key that
    signed an audit log cannot be undone.
    """
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise AuditError(f"Invalid key name {name!r}.", hint="Use a plain file name stem, e.g. 'synthkit'.")
    password = _passphrase_bytes(passphrase)
    root = Path(directory)
    private_path = root / f"{name}{PRIVATE_SUFFIX}"
    public_path = root / f"{name}{PUBLIC_SUFFIX}"
    existing = [p for p in (private_path, public_path) if p.exists()]
    if existing and not overwrite:
        raise SinkExistsError(
            f"Key file(s) already exist: {', '.join(map(str, existing))}.",
            hint="Keep them (a lost signing key cannot be recovered), choose another --name or "
            "directory, or pass overwrite=True (CLI: --overwrite) to replace them.",
        )
    root.mkdir(parents=True, exist_ok=True)

    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tmp_private = _write_new(root, private_pem, mode=0o600)
    try:
        tmp_public = _write_new(root, public_pem, mode=0o644)
    except BaseException:
        tmp_private.unlink(missing_ok=True)
        raise
    os.replace(tmp_private, private_path)
    os.replace(tmp_public, public_path)
    return KeyPair(private_path=private_path, public_path=public_path, key_id=key_id(key))


def _write_new(directory: Path, data: bytes, *, mode: int) -> Path:
    """Write ``data`` to a new temporary file in ``directory`` created with ``mode``; fsync it.

    The mode is set by ``os.open`` at creation (with ``O_EXCL``), so the bytes are never
    readable by others, not even for a moment.
    """
    tmp = directory / f".synthkit-key-{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _read(path: str | Path, what: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise AuditError(
            f"No {what} key file at {p}.",
            hint="Check the path, or create a key pair with `synthkit keys generate --out keys`.",
        )
    return p.read_bytes()


def load_private_key(path: str | Path, passphrase: str | bytes | None = None) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from PEM, decrypting it with ``passphrase`` if encrypted."""
    data = _read(path, "private")
    password = _passphrase_bytes(passphrase)
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:  # encrypted without passphrase, or passphrase for a plain key
        if password is None:
            raise AuditError(
                f"The private key {path} is encrypted and no passphrase was given.",
                hint="Pass passphrase=... (CLI: --passphrase-env VAR naming the variable that holds it).",
            ) from exc
        raise AuditError(
            f"The private key {path} is not encrypted, but a passphrase was given.",
            hint="Omit the passphrase for this key, or check that this is the key you meant.",
        ) from exc
    except ValueError as exc:
        if password is not None and b"ENCRYPTED" in data:
            raise AuditError(
                f"Wrong passphrase for the private key {path}.",
                hint="Use the passphrase the key was generated with; it cannot be recovered.",
            ) from exc
        raise AuditError(
            f"{path} is not a PEM private key: {exc}",
            hint="Pass the <name>.key file that `synthkit keys generate` wrote.",
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(
            f"{path} holds a {type(key).__name__}, not an Ed25519 private key.",
            hint="Audit records are signed with Ed25519: create a key with `synthkit keys generate`.",
        )
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """Load an Ed25519 public key from PEM (the ``<name>.pub`` file)."""
    data = _read(path, "public")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise AuditError(
            f"{path} is not a PEM public key: {exc}",
            hint="Pass the <name>.pub file that `synthkit keys generate` wrote.",
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(
            f"{path} holds a {type(key).__name__}, not an Ed25519 public key.",
            hint="Pass the <name>.pub file that `synthkit keys generate` wrote.",
        )
    return key
