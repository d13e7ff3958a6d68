"""Report: the metrics of one evaluation, with what each means; JSON and HTML out.

A Report is plain data (pydantic): policies read its metrics by stable dotted name, audits
store its JSON (sorted keys), and ``to_html`` renders it as one self-contained page.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthkit.errors import DataError
from synthkit.schema import Schema

REPORT_FORMAT_VERSION = 1
#: The order metrics are listed in (reports, CLI tables, HTML); unknown names follow, sorted.
METRIC_ORDER = (
    "quality.overall",
    "quality.column_shapes",
    "quality.column_pair_trends",
    "quality.strong_pair_trends",
    "quality.sdmetrics_score",
    "privacy.exact_copy_rate",
    "privacy.dcr_share",
    "privacy.dcr_median",
    "privacy.dcr_holdout_median",
    "privacy.nndr_median",
    "privacy.mia_auc",
    "privacy.mia_distance_auc",
    "privacy.mia_density_auc",
    "privacy.singling_out_risk",
    "privacy.linkability_risk",
    "privacy.attribute_inference_risk",
    "privacy.k_anonymity",
    "privacy.k_anonymity_share_below_k",
)
_SECTION_ORDER = {"quality": 0, "utility": 1, "privacy": 2}


class Metric(BaseModel):
    """One measured number, what it means, and which way is good."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Stable dotted name, e.g. 'quality.column_shapes'.")
    section: str = Field(description="'quality' or 'privacy'.")
    value: float | None
    meaning: str = Field(description="One sentence a non-expert understands.")
    higher_is_better: bool
    threshold: float | None = Field(None, description="A suggested bar; informational only.")
    note: str | None = None

    def formatted(self) -> str:
        """The value as shown in tables: three decimals, or 'n/a' when not computed."""
        return "n/a" if self.value is None else f"{self.value:.3f}"

    def meets_threshold(self) -> bool | None:
        """Whether the value clears the suggested bar; None when either is missing."""
        if self.value is None or self.threshold is None:
            return None
        return (
            self.value >= self.threshold if self.higher_is_better else self.value <= self.threshold
        )


class Report(BaseModel):
    """Quality and privacy of one synthetic table against the real table it imitates."""

    model_config = ConfigDict(
        extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    metrics: dict[str, Metric]
    columns: list[dict[str, Any]] = Field(
        description="Per column: name, kind, metric, score, real/synthetic null share."
    )
    pairs: list[dict[str, Any]] = Field(
        description="Per column pair: a, b, metric, score, real and synthetic association."
    )
    excluded: dict[str, str] = Field(description="Column name -> why it was not evaluated.")
    real_fingerprint: str
    synthetic_fingerprint: str
    holdout_fingerprint: str | None = None
    n_real: int
    n_synthetic: int
    n_holdout: int | None = None
    created_at: str
    synthkit_version: str
    schema_: dict[str, Any] = Field(alias="schema", description="The Schema used, as a dict.")
    distributions: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per column, the binned shares the HTML plots."
    )
    correlations: dict[str, Any] | None = Field(
        None, description="Real and synthetic Pearson matrices of the continuous columns."
    )
    dcr_distribution: dict[str, Any] | None = Field(
        None,
        description="Binned distances from synthetic rows to their closest training (and "
        "holdout) row, with quantiles: the HTML plots it.",
    )
    settings: dict[str, Any] = Field(default_factory=dict, description="seed, max_rows, ...")
    notes: list[str] = Field(default_factory=list)
    preparation: dict[str, Any] | None = Field(
        None, description="What cleaning did to the real data before training (rules, counts "
        "per rule, examples): synthkit.prepare.clean's report, when the pipeline cleaned.",
    )
    format_version: int = REPORT_FORMAT_VERSION

    @model_validator(mode="after")
    def _ordered(self) -> Report:
        """Keep metrics in one canonical order, whether built or read back from sorted JSON."""
        rank = {name: i for i, name in enumerate(METRIC_ORDER)}

        def key(m: Metric) -> tuple[int, int, str]:
            return (_SECTION_ORDER.get(m.section, 2), rank.get(m.name, len(rank)), m.name)

        self.metrics = {m.name: m for m in sorted(self.metrics.values(), key=key)}
        return self

    # --- access --------------------------------------------------------------------------
    def value(self, name: str) -> float | None:
        """The value of metric ``name``; None when it is absent or was not computed."""
        metric = self.metrics.get(name)
        return None if metric is None else metric.value

    def section(self, section: str) -> dict[str, Metric]:
        """The metrics of one section ('quality' or 'privacy'), in report order."""
        return {k: m for k, m in self.metrics.items() if m.section == section}

    def table_schema(self) -> Schema:
        """The Schema the report was computed with."""
        return Schema.from_dict(self.schema_)

    def summary_rows(self) -> list[tuple[str, str, str]]:
        """(name, formatted value, meaning) per metric, quality first: for CLI tables."""
        return [(m.name, m.formatted(), m.meaning) for m in self.metrics.values()]

    # --- JSON ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the schema under the key 'schema')."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON with sorted keys; also written (atomically) to ``path`` when one is given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        if path is not None:
            write_atomic(Path(path), text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Report:
        """Parse JSON text, or read it from a path."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise DataError(
                    f"Report file not found: {path}",
                    hint="Pass the path of a JSON file written by Report.to_json(path).",
                )
            text = path.read_text(encoding="utf-8")
        try:
            return cls.model_validate(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise DataError(
                f"Not a synthkit report: {exc}",
                hint="Pass JSON written by Report.to_json() of this synthkit version.",
            ) from exc

    # --- HTML ----------------------------------------------------------------------------
    def to_html(self, path: str | Path | None = None) -> str:
        """One self-contained offline HTML page; also written (atomically) to ``path``."""
        from synthkit.evaluate.html import render_html

        page = render_html(self)
        if path is not None:
            write_atomic(Path(path), page)
        return page


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # 0o666 minus the umask, like any file the user writes (mkstemp would force 0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
