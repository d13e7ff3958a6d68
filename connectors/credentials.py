"""Database URIs and their credentials: parse, find the password, and never show it.

A password may come from the URI itself, from an environment variable named by the caller
(``password_env=``), from ``PGPASSWORD`` (PostgreSQL) or ``SYNTHKIT_DB_PASSWORD``, or from a
``.pgpass``-style file (``SYNTHKIT_PASSFILE``, ``PGPASSFILE`` or ``~/.pgpass``; lines of
``host:port:database:user:password``, ``*`` matches anything). Whatever its origin, it lives
only in memory: :func:`redact` and :attr:`DatabaseURI.redacted` are what logs, errors, reports
and audit records show.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from synthkit.errors import ConnectorError, UnsupportedFormatError

__all__ = ["DatabaseURI", "parse_uri", "read_passfile", "redact", "resolve_credentials"]

#: Schemes (before any ``+driver``) that name a database.
DATABASE_SCHEMES = frozenset({"postgresql", "postgres", "sqlite", "mysql", "mariadb"})
_ALIASES = {"postgres": "postgresql"}
#: ``scheme://user:password@`` anywhere in a text; the password part is what gets masked.
#: (The password runs to the token's last "@", so an unescaped "@" in it is masked too.)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<password>\S*?)(?=@[^@\s]*(?:\s|$))")
_MASK = "***"
_GENERIC_ENV = "SYNTHKIT_DB_PASSWORD"


@dataclass(frozen=True)
class DatabaseURI:
    """A parsed database URI; the password is kept out of ``repr`` and ``str``."""

    dialect: str  # postgresql, sqlite, mysql, mariadb
    driver: str | None
    username: str | None
    password: str | None = field(repr=False)
    host: str | None
    port: int | None
    database: str | None
    query: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.redacted

    @property
    def redacted(self) -> str:
        """The URI with its password (if any) shown as ``***``: safe for logs and records."""
        return self._render(mask=True)

    @property
    def sqlite_path(self) -> Path:
        """The database file of a ``sqlite:///path`` URI."""
        if not self.database or self.database == ":memory:":
            raise UnsupportedFormatError(
                "A sqlite URI must name a database file, e.g. sqlite:///data/shop.db.",
                hint="Use sqlite:///relative/path.db or sqlite:////absolute/path.db (four slashes).",
            )
        return Path(self.database).expanduser()

    def with_password(self, password: str | None) -> DatabaseURI:
        return replace(self, password=password)

    def secret_uri(self) -> str:
        """The full URI, password included, for the driver only: never log or show it."""
        return self._render(mask=False)

    def libpq_uri(self) -> str:
        """A libpq connection URI (for the ADBC PostgreSQL driver), password included."""
        return replace(self, driver=None)._render(mask=False)

    def sqlalchemy_url(self) -> Any:
        """A SQLAlchemy URL object; PostgreSQL goes through psycopg (version 3)."""
        from sqlalchemy.engine import URL

        driver = self.driver
        if self.dialect == "postgresql" and driver is None:
            driver = "psycopg"
        if self.dialect in ("mysql", "mariadb") and driver is None:
            driver = "pymysql"
        name = self.dialect if driver is None else f"{self.dialect}+{driver}"
        return URL.create(
            name,
            username=self.username,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.database,
            query=self.query,
        )

    def _render(self, *, mask: bool) -> str:
        from urllib.parse import quote, urlencode

        scheme = self.dialect if self.driver is None else f"{self.dialect}+{self.driver}"
        if self.dialect == "sqlite":
            return f"{scheme}:///{self.database or ''}"
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            if self.password is not None:
                auth += ":" + (_MASK if mask else quote(self.password, safe=""))
            auth += "@"
        host = self.host or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        port = f":{self.port}" if self.port else ""
        db = f"/{quote(self.database, safe='')}" if self.database else ""
        query = f"?{urlencode(self.query, doseq=True)}" if self.query else ""
        return f"{scheme}://{auth}{host}{port}{db}{query}"


def is_database_uri(text: str | os.PathLike[str]) -> bool:
    """True when ``text`` is a URI whose scheme names a database this package reads."""
    if isinstance(text, os.PathLike):
        return False
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://", str(text))
    return bool(m) and m.group(1).lower().split("+", 1)[0] in DATABASE_SCHEMES


def parse_uri(uri: str) -> DatabaseURI:
    """Parse ``postgresql://user:pw@host:port/db``, ``sqlite:///path.db``, ``mysql://...``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(uri)
    except ArgumentError as exc:
        raise UnsupportedFormatError(
            f"Not a database URI: {redact(uri)}",
            hint="Write it as postgresql://user@host:5432/db or sqlite:///path/to/file.db.",
        ) from exc
    dialect, _, driver = url.drivername.partition("+")
    dialect = _ALIASES.get(dialect.lower(), dialect.lower())
    if dialect not in DATABASE_SCHEMES:
        raise UnsupportedFormatError(
            f"No database connector for '{dialect}://' URIs: {redact(uri)}",
            hint="Supported: postgresql://, sqlite:///, mysql:// and mariadb:// (with a driver).",
        )
    return DatabaseURI(
        dialect=dialect,
        driver=driver or None,
        username=url.username,
        password=url.password if url.password is None else str(url.password),
        host=url.host,
        port=url.port,
        database=url.database,
        query=dict(url.query),
    )


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ***."""
    return _USERINFO.sub(lambda m: m.group("head") + _MASK, str(text))


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with URI passwords and every given secret (and its URL-quoted form) masked."""
    from urllib.parse import quote

    out = redact(text)
    for secret in secrets:
        if secret:
            for form in {secret, quote(secret, safe="")}:
                out = out.replace(form, _MASK)
    return out


def resolve_credentials(uri: DatabaseURI, *, password_env: str | None = None) -> DatabaseURI:
    """``uri`` with its password filled in from the first place that has one (see module doc)."""
    if uri.dialect == "sqlite" or uri.password is not None:
        return uri
    if password_env:
        value = os.environ.get(password_env)
        if not value:
            raise ConnectorError(
                f"The environment variable {password_env} (password_env) is unset or empty.",
                hint=f"Export it before running, e.g. `export {password_env}=...`, or drop "
                "password_env to use PGPASSWORD or a ~/.pgpass file.",
            )
        return uri.with_password(value)
    for name in (("PGPASSWORD",) if uri.dialect == "postgresql" else ()) + (_GENERIC_ENV,):
        value = os.environ.get(name)
        if value:
            return uri.with_password(value)
    password = read_passfile(
        _passfile(uri.dialect), host=uri.host, port=uri.port, database=uri.database, user=uri.username
    )
    return uri.with_password(password) if password is not None else uri


def _passfile(dialect: str) -> Path | None:
    for name in ("SYNTHKIT_PASSFILE", "PGPASSFILE") if dialect == "postgresql" else ("SYNTHKIT_PASSFILE",):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    if dialect == "postgresql":
        return Path("~/.pgpass").expanduser()
    return None


def read_passfile(
    path: Path | None,
    *,
    host: str | None,
    port: int | None,
    database: str | None,
    user: str | None,
) -> str | None:
    """The password of the first matching ``host:port:database:user:password`` line, if any.

    ``*`` matches any value and ``\\:`` / ``\\\\`` escape a colon / backslash, as in libpq's
    ``.pgpass``. Like libpq, a file that others may read is refused, with the fix in the hint.
    """
    if path is None or not path.is_file():
        return None
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConnectorError(
            f"The password file {path} may be read by other users; it was not used.",
            hint=f"Restrict it to its owner: chmod 600 {path}",
        )
    wanted = (host or "localhost", str(port or 5432), database or "", user or "")
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = _split_passfile_line(line)
        if len(fields) != 5:
            continue
        if all(f == "*" or f == w for f, w in zip(fields[:4], wanted, strict=True)):
            return fields[4]
    return None


def _split_passfile_line(line: str) -> list[str]:
    fields, current, escaped = [], [], False
    for ch in line:  # a few dozen characters a line, read once per connection
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":" and len(fields) < 4:
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
    fields.append("".join(current))
    return fields
