"""Ed25519 signing keys for audit records: generate, load, identify.

Private keys are PKCS8 PEM, encrypted when a passphrase is given, and are created with mode
0600 from the first byte (never written world-readable and narrowed afterwards). Public keys
are SubjectPublicKeyInfo PEM. A key's id is the first 16 hex characters of the sha256 of its
raw public bytes: short enough to print, and stored in every record it signs.

Rotation (:func:`rotate_keypair`) makes a new pair current under the same name, moves the old
private key to ``retired/`` (still 0600) or deletes it, and keeps every public key that ever
signed in ``keyring/<name>-<key id>.pub``, so records signed before the rotation still verify.
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
#: Sub-directories of a key directory: old public keys, and retired private keys.
KEYRING_DIR = "keyring"
RETIRED_DIR = "retired"


@dataclass(frozen=True)
class KeyPair:
    """Where a generated key pair was written, and its key id."""

    private_path: Path
    public_path: Path
    key_id: str


@dataclass(frozen=True)
class KeyRotation:
    """What :func:`rotate_keypair` did: the new current pair and where the old key went."""

    current: KeyPair
    retired_key_id: str
    #: The old private key, kept 0600 under ``retired/``; None when it was removed.
    retired_private_path: Path | None
    keyring: Path


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
    _check_name(name)
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
    private_pem, public_pem = _pem_pair(key, password)
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


# --- rotation and keyrings ------------------------------------------------------------------
def rotate_keypair(
    directory: str | Path,
    *,
    name: str = "synthkit",
    passphrase: str | bytes | None = None,
    old_passphrase: str | bytes | None = None,
    remove_old: bool = False,
) -> KeyRotation:
    """Make a new ``<name>`` key pair current; keep the old public key in the keyring.

    The old private key moves to ``retired/<name>-<key id>.key`` (mode 0600) or, with
    ``remove_old=True``, is replaced and gone. ``passphrase`` encrypts the new private key;
    ``old_passphrase`` is only needed to check that the old pair matches when it is encrypted.
    Every step is an atomic rename, in an order that never loses the old public key.
    """
    root = Path(directory)
    _check_name(name)
    private_path, public_path = root / f"{name}{PRIVATE_SUFFIX}", root / f"{name}{PUBLIC_SUFFIX}"
    if not public_path.is_file() or not private_path.is_file():
        raise AuditError(
            f"No key pair '{name}' to rotate in {root} (need {private_path.name} and {public_path.name}).",
            hint=f"Create one first: synthkit keys generate --out {root} --name {name}.",
        )
    old_public = load_public_key(public_path)
    old_id = key_id(old_public)
    if old_passphrase is not None or b"ENCRYPTED" not in private_path.read_bytes():
        if key_id(load_private_key(private_path, old_passphrase)) != old_id:
            raise AuditError(
                f"{private_path.name} and {public_path.name} are not one key pair; nothing was rotated.",
                hint="Restore the matching pair from a trusted copy before rotating.",
            )
    password = _passphrase_bytes(passphrase)
    keyring = root / KEYRING_DIR
    keyring.mkdir(exist_ok=True)
    _install(keyring, f"{name}-{old_id}{PUBLIC_SUFFIX}", public_path.read_bytes(), mode=0o644)

    key = Ed25519PrivateKey.generate()
    private_pem, public_pem = _pem_pair(key, password)
    new_id = key_id(key)
    tmp_private = _write_new(root, private_pem, mode=0o600)
    try:
        tmp_public = _write_new(root, public_pem, mode=0o644)
    except BaseException:
        tmp_private.unlink(missing_ok=True)
        raise
    retired_path: Path | None = None
    if not remove_old:
        retired = root / RETIRED_DIR
        retired.mkdir(mode=0o700, exist_ok=True)
        retired_path = retired / f"{name}-{old_id}{PRIVATE_SUFFIX}"
        os.chmod(private_path, 0o600)
        os.replace(private_path, retired_path)
    os.replace(tmp_private, private_path)  # with remove_old, this replaces the old key
    os.replace(tmp_public, public_path)
    _install(keyring, f"{name}-{new_id}{PUBLIC_SUFFIX}", public_pem, mode=0o644)
    return KeyRotation(
        current=KeyPair(private_path=private_path, public_path=public_path, key_id=new_id),
        retired_key_id=old_id,
        retired_private_path=retired_path,
        keyring=keyring,
    )


def load_keyring(directory: str | Path) -> dict[str, Ed25519PublicKey]:
    """Every public key in a key directory and its ``keyring/``, by key id (ids from the keys)."""
    root = Path(directory)
    if not root.is_dir():
        raise AuditError(
            f"No key directory at {root}.",
            hint="Pass the directory that `synthkit keys generate --out` wrote.",
        )
    found: dict[str, Ed25519PublicKey] = {}
    for path in sorted([*root.glob(f"*{PUBLIC_SUFFIX}"), *(root / KEYRING_DIR).glob(f"*{PUBLIC_SUFFIX}")]):
        public = load_public_key(path)
        found[key_id(public)] = public
    return found


def _check_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise AuditError(f"Invalid key name {name!r}.", hint="Use a plain file name stem, e.g. 'synthkit'.")
    return name


def _pem_pair(key: Ed25519PrivateKey, password: bytes | None) -> tuple[bytes, bytes]:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def _install(directory: Path, name: str, data: bytes, *, mode: int) -> Path:
    """Atomically write ``data`` as ``directory/name`` unless that file already holds it."""
    target = directory / name
    if target.is_file() and target.read_bytes() == data:
        return target
    os.replace(_write_new(directory, data, mode=mode), target)
    return target
