"""Ed25519 key pairs: file modes, overwrite protection, passphrases, key ids, bad files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from synthkit.errors import AuditError, SinkExistsError
from synthkit.policies import generate_keypair, key_id, load_private_key, load_public_key

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_writes_pem_pair_with_matching_key_id(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "keys")
    assert pair.private_path == tmp_path / "keys" / "synthkit.key"
    assert pair.public_path == tmp_path / "keys" / "synthkit.pub"
    assert pair.private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pair.public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    private = load_private_key(pair.private_path)
    public = load_public_key(pair.public_path)
    assert isinstance(private, Ed25519PrivateKey) and isinstance(public, Ed25519PublicKey)
    assert key_id(private) == key_id(public) == pair.key_id
    assert len(pair.key_id) == 16 and int(pair.key_id, 16) >= 0
    assert not [p for p in (tmp_path / "keys").iterdir() if p.name.endswith(".tmp")]


@posix_only
def test_private_key_is_0600_even_with_open_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        pair = generate_keypair(tmp_path, name="open")
    finally:
        os.umask(old)
    assert _mode(pair.private_path) == 0o600
    assert _mode(pair.public_path) == 0o644


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    first = generate_keypair(tmp_path)
    before = first.private_path.read_bytes()
    with pytest.raises(SinkExistsError, match="already exist") as info:
        generate_keypair(tmp_path)
    assert "overwrite=True" in info.value.hint
    assert first.private_path.read_bytes() == before
    second = generate_keypair(tmp_path, overwrite=True)
    assert second.key_id != first.key_id
    assert key_id(load_public_key(second.public_path)) == second.key_id


@posix_only
def test_overwrite_does_not_inherit_loose_mode(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path)
    os.chmod(pair.private_path, 0o644)
    again = generate_keypair(tmp_path, overwrite=True)
    assert _mode(again.private_path) == 0o600


def test_refuses_when_only_public_key_exists(tmp_path: Path) -> None:
    (tmp_path / "synthkit.pub").write_text("x")
    with pytest.raises(SinkExistsError):
        generate_keypair(tmp_path)
    assert not (tmp_path / "synthkit.key").exists()


@pytest.mark.parametrize("passphrase", ["correct horse", b"bytes pass"])
def test_passphrase_round_trip(tmp_path: Path, passphrase: str | bytes) -> None:
    pair = generate_keypair(tmp_path, passphrase=passphrase)
    assert b"ENCRYPTED PRIVATE KEY" in pair.private_path.read_bytes()
    key = load_private_key(pair.private_path, passphrase=passphrase)
    assert key_id(key) == pair.key_id


def test_wrong_or_missing_passphrase(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path, passphrase="right")
    with pytest.raises(AuditError, match="Wrong passphrase") as info:
        load_private_key(pair.private_path, passphrase="wrong")
    assert "passphrase" in info.value.hint
    with pytest.raises(AuditError, match="encrypted and no passphrase") as info:
        load_private_key(pair.private_path)
    assert "passphrase" in info.value.hint


def test_passphrase_for_plain_key_and_empty_passphrase(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path)
    with pytest.raises(AuditError, match="not encrypted"):
        load_private_key(pair.private_path, passphrase="x")
    with pytest.raises(AuditError, match="empty"):
        generate_keypair(tmp_path / "other", passphrase="")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="No private key file") as info:
        load_private_key(tmp_path / "absent.key")
    assert "keys generate" in info.value.hint
    with pytest.raises(AuditError, match="No public key file"):
        load_public_key(tmp_path / "absent.pub")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(AuditError, match="not a PEM private key"):
        load_private_key(junk)
    with pytest.raises(AuditError, match="not a PEM public key"):
        load_public_key(junk)


def test_public_and_private_files_are_not_interchangeable(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path)
    with pytest.raises(AuditError):
        load_public_key(pair.private_path)
    with pytest.raises(AuditError):
        load_private_key(pair.public_path)


def test_rejects_path_like_names(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="Invalid key name"):
        generate_keypair(tmp_path, name="../escape")
