"""Test doubles shared by the policy and audit tests: the duck-typed Report the gate reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINGERPRINT = "sha256:" + "a" * 64


@dataclass
class FakeMetric:
    name: str
    value: float | None
    meaning: str = ""
    higher_is_better: bool = True


@dataclass
class FakeReport:
    """The Report interface policies rely on: value(), metrics, fingerprints, to_dict()."""

    values: dict[str, float | None]
    synthetic_fingerprint: str = FINGERPRINT
    real_fingerprint: str | None = "sha256:" + "b" * 64
    metrics: dict[str, FakeMetric] = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = {n: FakeMetric(n, v) for n, v in self.values.items()}

    def value(self, name: str) -> float | None:
        metric = self.metrics.get(name)
        return None if metric is None else metric.value

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.values}
