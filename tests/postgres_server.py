"""A throwaway PostgreSQL server for the tests, started from the machine's own binaries.

``initdb`` and ``pg_ctl`` refuse to run as root, which CI is: as root the server runs as an
unprivileged OS user (created if missing) through ``runuser -u USER --``. It listens on a free
loopback port only, with password (SCRAM) authentication for TCP, and its data directory is
removed when it stops. Binaries are found with ``pg_config --bindir``, under
``/usr/lib/postgresql/*/bin`` or on PATH; ``make test`` installs Debian's ``postgresql`` package
when none are there. Registered as a pytest plugin from conftest: fixture ``postgres_server``.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

OS_USER = "synthkit-pg"
DB_USER = "synthkit"
#: Fast settings for a throwaway server; durability is not wanted in tests.
TEST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                 "max_connections": "40", "shared_buffers": "64MB"}


def find_bindir() -> Path | None:
    """The directory holding ``postgres``, ``initdb`` and ``pg_ctl``, newest version first."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(p: Path) -> float:
        m = re.search(r"/(\d+(?:\.\d+)?)/bin$", str(p))
        return float(m.group(1)) if m else 0.0

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).parent)
    for d in candidates:
        if all((d / tool).is_file() for tool in ("postgres", "initdb", "pg_ctl")):
            return d
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One server: ``start()``, ``uri(database)``, ``create_database(name)``, ``stop()``."""

    def __init__(self, bindir: Path, *, settings: dict[str, str] | None = None) -> None:
        self.bindir = bindir
        self.settings = dict(TEST_SETTINGS if settings is None else settings)
        self.password = "pw-" + secrets.token_hex(12)
        self.port = 0
        self.root: Path | None = None
        self._as_user: list[str] = []

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            _ensure_os_user(OS_USER)
            self._as_user = ["runuser", "-u", OS_USER, "--"]
        self.root = Path(tempfile.mkdtemp(prefix="synthkit-pg-"))
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as_user:
            shutil.chown(self.root, OS_USER)
            shutil.chown(pwfile, OS_USER)
        data = self.root / "data"
        self._run(["initdb", "-D", str(data), "-U", DB_USER, f"--pwfile={pwfile}", "--auth-local=trust",
                   "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"])
        pwfile.unlink()
        options = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(self.root), **self.settings}
        for attempt in range(5):
            self.port = free_port()
            opts = " ".join(f"-c {k}={v}" for k, v in {**options, "port": str(self.port)}.items())
            try:
                self._run(["pg_ctl", "-D", str(data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
                           "-o", opts, "start"])
                break
            except RuntimeError:
                if attempt == 4:
                    raise
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            try:
                self._run(["pg_ctl", "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"])
            except RuntimeError:
                self._run(["pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"], check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def _run(self, args: list[str], *, check: bool = True) -> str:
        cmd = [*self._as_user, str(self.bindir / args[0]), *args[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if check and proc.returncode != 0:
            log = ""
            if self.root is not None and (self.root / "server.log").exists():
                log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(args[:1])} failed ({proc.returncode}): {proc.stderr or proc.stdout}\n{log}")
        return proc.stdout

    # --- use ------------------------------------------------------------------------------------
    def uri(self, database: str = "postgres", *, password: str | None = None, with_password: bool = True) -> str:
        pw = password if password is not None else self.password
        auth = f"{DB_USER}:{pw}" if with_password else DB_USER
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        """Run one statement in autocommit mode (CREATE DATABASE cannot run in a transaction)."""
        import psycopg

        with psycopg.connect(self.uri(database), autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URI (password included)."""
        name = name or f"t_{secrets.token_hex(4)}"
        self.sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.uri(name)


def _ensure_os_user(name: str) -> None:
    import pwd

    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the whole test session (skipped only when no binaries exist)."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("No PostgreSQL server binaries (postgres, initdb, pg_ctl) found via pg_config, "
                    "/usr/lib/postgresql/*/bin or PATH; `make test` installs Debian's postgresql package.")
    server = PostgresServer(bindir).start()
    try:
        yield server
    finally:
        server.stop()
