"""Key rotation: a new current key, the old private key retired, old public keys kept in a keyring."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import FakeReport

from synthkit.cli import main
from synthkit.errors import AuditError
from synthkit.policies import AuditLog, gate, generate_keypair, key_id, load_private_key, verify_log
from synthkit.policies.keys import load_keyring, load_public_key, rotate_keypair


def _append(log: AuditLog, key_path: Path, purpose: str = "software testing", passphrase: str | None = None) -> str:
    report = FakeReport({"quality.overall": 0.9, "quality.column_shapes": 0.9, "privacy.exact_copy_rate": 0.0,
                         "privacy.dcr_share": 0.5, "privacy.mia_auc": 0.5})
    record = log.append(gate("default", report, purpose), private_key=load_private_key(key_path, passphrase),
                        report=report)
    return record.key_id


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_rotate_makes_a_new_current_key_and_retires_the_old(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = generate_keypair(keys)
    done = rotate_keypair(keys)
    assert done.retired_key_id == first.key_id != done.current.key_id
    assert done.current.private_path == keys / "synthkit.key" and _mode(done.current.private_path) == 0o600
    assert key_id(load_private_key(keys / "synthkit.key")) == done.current.key_id
    assert key_id(load_public_key(keys / "synthkit.pub")) == done.current.key_id
    retired = done.retired_private_path
    assert retired == keys / "retired" / f"synthkit-{first.key_id}.key" and _mode(retired) == 0o600
    assert key_id(load_private_key(retired)) == first.key_id
    assert set(load_keyring(keys)) == {first.key_id, done.current.key_id}
    assert sorted(p.name for p in (keys / "keyring").iterdir()) == sorted(
        [f"synthkit-{first.key_id}.pub", f"synthkit-{done.current.key_id}.pub"])
    assert not [p for p in keys.rglob("*.tmp")]


def test_records_signed_before_rotation_verify_after_it(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = generate_keypair(keys)
    log = AuditLog(tmp_path / "audit.jsonl")
    assert _append(log, keys / "synthkit.key") == first.key_id
    second = rotate_keypair(keys).current
    assert _append(log, keys / "synthkit.key") == second.key_id  # signing uses the current key
    third = rotate_keypair(keys, remove_old=True).current
    assert _append(log, keys / "synthkit.key") == third.key_id
    result = verify_log(log.path, keys, head=True)  # a key directory: its keys and its keyring
    assert result.ok and result.n_records == 3 and result.head_status == "ok", result.problems
    assert result.signatures == {0: "valid", 1: "valid", 2: "valid"}
    # only the current public key: the older records are reported, by index
    only_current = verify_log(log.path, keys / "synthkit.pub")
    assert not only_current.ok and only_current.first_bad == 0
    assert only_current.signatures == {0: "unknown key", 1: "unknown key", 2: "valid"}
    assert any(f"unknown key {first.key_id}" in p for p in only_current.problems)


def test_a_record_signed_by_an_unknown_key_is_reported(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    generate_keypair(keys)
    stranger = generate_keypair(tmp_path / "stranger")
    log = AuditLog(tmp_path / "audit.jsonl")
    _append(log, keys / "synthkit.key")
    _append(log, stranger.private_path)
    rotate_keypair(keys)
    _append(log, keys / "synthkit.key")
    result = verify_log(log.path, keys)
    assert not result.ok and result.first_bad == 1 and result.signatures[1] == "unknown key"
    assert result.signatures[0] == result.signatures[2] == "valid"
    assert any(f"record 1: signed by unknown key {stranger.key_id}" == p for p in result.problems)

    runner = CliRunner()
    cli = runner.invoke(main, ["audit", "verify", str(log.path), "--keys", str(keys)])
    assert cli.exit_code == 1 and "record 1" in cli.output and stranger.key_id in cli.output
    both = runner.invoke(main, ["audit", "verify", str(log.path), "--keys", str(keys),
                                "-k", str(stranger.public_path)])
    assert both.exit_code == 0, both.output


def test_remove_old_deletes_the_old_private_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = generate_keypair(keys)
    done = rotate_keypair(keys, remove_old=True)
    assert done.retired_private_path is None and not (keys / "retired").exists()
    assert not any(
        key_id(load_private_key(p)) == first.key_id for p in keys.rglob("*.key")
    )
    assert first.key_id in load_keyring(keys)


def test_rotate_with_a_passphrase_and_errors(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    with pytest.raises(AuditError, match="No key pair 'synthkit' to rotate"):
        rotate_keypair(keys)
    generate_keypair(keys, passphrase="old secret")
    done = rotate_keypair(keys, passphrase="new secret", old_passphrase="old secret")
    with pytest.raises(AuditError, match="encrypted"):
        load_private_key(done.current.private_path)
    assert key_id(load_private_key(done.current.private_path, "new secret")) == done.current.key_id
    assert key_id(load_private_key(done.retired_private_path, "old secret")) == done.retired_key_id
    with pytest.raises(AuditError, match="Invalid key name"):
        rotate_keypair(keys, name="../x")


def test_mismatched_pair_is_not_rotated(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    generate_keypair(keys)
    other = generate_keypair(tmp_path / "other")
    (keys / "synthkit.pub").write_bytes(other.public_path.read_bytes())
    before = (keys / "synthkit.key").read_bytes()
    with pytest.raises(AuditError, match="not one key pair"):
        rotate_keypair(keys)
    assert (keys / "synthkit.key").read_bytes() == before


def test_cli_rotate(tmp_path: Path) -> None:
    runner = CliRunner()
    keys = tmp_path / "keys"
    assert runner.invoke(main, ["keys", "generate", "--out", str(keys), "--name", "ops"]).exit_code == 0
    old = key_id(load_public_key(keys / "ops.pub"))
    result = runner.invoke(main, ["keys", "rotate", str(keys), "--name", "ops"])
    assert result.exit_code == 0, result.output
    assert "Rotated" in result.output and old in result.output
    assert (keys / "retired" / f"ops-{old}.key").exists()
    gone = runner.invoke(main, ["keys", "rotate", str(keys), "--name", "ops", "--remove-old"])
    assert gone.exit_code == 0 and "removed" in gone.output
    assert runner.invoke(main, ["keys", "rotate", str(keys), "--name", "nope"]).exit_code == 2
    assert runner.invoke(main, ["keys", "rotate", "--help"]).output.count("Example") == 1
