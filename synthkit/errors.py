"""Typed errors: each says what went wrong and what to do about it.

Every error synthkit raises on purpose derives from :class:`SynthkitError`, carries a
``hint`` (the next step for the user) and is safe to show on a terminal.
"""

from __future__ import annotations


class SynthkitError(Exception):
    """Base class: a message saying what was wrong, plus a hint saying what to do."""

    default_hint = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message}\nHint: {self.hint}" if self.hint else self.message


# --- input data -----------------------------------------------------------------------------
class DataError(SynthkitError, ValueError):
    """The data cannot be used as given (empty, one row, all-null, mixed types, ...)."""


class EmptyDataError(DataError):
    default_hint = "Check the source: it has no rows (or no columns) to learn from."


class SchemaError(SynthkitError, ValueError):
    """A schema is invalid or does not match the data it is applied to."""


# --- connectors -----------------------------------------------------------------------------
class ConnectorError(SynthkitError):
    """Reading from a source or writing to a sink failed."""


class SourceNotFoundError(ConnectorError, FileNotFoundError):
    default_hint = "Check the path (relative paths start at the current directory)."


class UnsupportedFormatError(ConnectorError, ValueError):
    default_hint = "Use a .csv, .parquet, .jsonl or .ndjson file, or pass format= explicitly."


class ReadError(ConnectorError):
    default_hint = "Check that the file is complete and in the format its extension says."


class WriteError(ConnectorError):
    default_hint = "Nothing was written. Check the destination directory and its permissions."


class SinkExistsError(WriteError, FileExistsError):
    default_hint = "Pass overwrite=True (CLI: --overwrite) or choose another destination."


class GateRefusedError(ConnectorError, PermissionError):
    """A sink refused to write: no passing policy Decision for exactly this data."""

    default_hint = (
        "Evaluate the synthetic data, gate it with a policy (synthkit.policies.gate) and pass the "
        "passing Decision to the sink. Nothing was written."
    )


# --- generators and artifacts ---------------------------------------------------------------
class ConfigError(SynthkitError, ValueError):
    """A generator or pipeline configuration is invalid."""


class GeneratorNotFoundError(SynthkitError, KeyError):
    default_hint = "Run `synthkit generators` to list the generators that are installed."

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return SynthkitError.__str__(self)


class NotFittedError(SynthkitError, RuntimeError):
    default_hint = "Call fit(data) before sample() or save()."


class ArtifactError(SynthkitError):
    """A model directory is missing, incomplete, or of an unknown format."""


class IntegrityError(ArtifactError):
    """A file in a model directory or audit log does not match its recorded hash."""

    default_hint = (
        "The artifact was changed or corrupted after it was written. Do not use it; "
        "re-train or restore it from a trusted copy."
    )


class UntrustedPickleError(ArtifactError):
    default_hint = (
        "SDV stores synthesizers with pickle, which can run arbitrary code when loaded. "
        "Load it only if you trust its origin, with trust_pickle=True (CLI: --trust-pickle)."
    )


class MissingDependencyError(SynthkitError, ImportError):
    """An optional dependency is not installed."""


# --- policies and audit ---------------------------------------------------------------------
class PolicyError(SynthkitError, ValueError):
    """A policy pack is invalid or cannot be found."""


class PurposeMissingError(PolicyError):
    default_hint = (
        "Declare what the synthetic data is for, e.g. --purpose 'software testing' "
        "(pipeline YAML: purpose: ...). Policies refuse data without a declared purpose."
    )


class AuditError(SynthkitError):
    """An audit log or key cannot be read, written or verified."""


class SignatureError(AuditError):
    default_hint = "The record was changed after signing, or was signed with another key."
