"""synthkit: synthetic data you can safely share.

The public API, re-exported lazily so that ``import synthkit`` stays fast (no torch, no SDV)::

    import synthkit as sk
    gen = sk.create("tabular/copula", seed=0).fit(df)
    synthetic = gen.sample(1_000, seed=1)
    report = sk.evaluate(df, synthetic, gen.schema_)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # schema
    "Schema": "synthkit.schema",
    "Column": "synthkit.schema",
    "ColumnKind": "synthkit.schema",
    "PIIKind": "synthkit.schema",
    "infer_schema": "synthkit.schema",
    # generators
    "Generator": "synthkit.generators.base",
    "GeneratorConfig": "synthkit.generators.base",
    "create": "synthkit.generators.registry",
    "load": "synthkit.generators.registry",
    "available_generators": "synthkit.generators.registry:available",
    # several tables
    "MultiTable": "synthkit.relational",
    "ForeignKey": "synthkit.relational",
    "RelationalSynthesizer": "synthkit.generators.relational",
    "evaluate_relational": "synthkit.evaluate.relational",
    "SequentialSynthesizer": "synthkit.generators.relational",
    "evaluate_sequences": "synthkit.evaluate.relational",
    "read_tables": "synthkit.relational_io",
    "RelationalPipeline": "synthkit.relational_flow",
    # evaluation
    "evaluate": "synthkit.evaluate",
    "Report": "synthkit.evaluate",
    # pipeline
    "Pipeline": "synthkit.pipeline",
    "PipelineConfig": "synthkit.pipeline",
    "PipelineResult": "synthkit.pipeline",
    # data
    "fingerprint": "synthkit.frames",
    "to_polars": "synthkit.frames",
    "split_holdout": "synthkit.prepare.split",
    # preparation
    "profile": "synthkit.prepare.profile",
    "clean": "synthkit.prepare.clean",
    "CleanRules": "synthkit.prepare.clean",
    "augment": "synthkit.augmentation",
}

__all__ = [
    "__version__",
    "Schema", "Column", "ColumnKind", "PIIKind", "infer_schema",
    "Generator", "GeneratorConfig", "create", "load", "available_generators",
    "MultiTable", "ForeignKey", "RelationalSynthesizer", "evaluate_relational",
    "SequentialSynthesizer", "evaluate_sequences", "read_tables", "RelationalPipeline",
    "evaluate", "Report",
    "Pipeline", "PipelineConfig", "PipelineResult",
    "fingerprint", "to_polars", "split_holdout",
    "profile", "clean", "CleanRules", "augment",
]

if TYPE_CHECKING:  # pragma: no cover
    from synthkit.augmentation import augment
    from synthkit.evaluate import Report, evaluate
    from synthkit.evaluate.relational import evaluate_relational, evaluate_sequences
    from synthkit.frames import fingerprint, to_polars
    from synthkit.generators.base import Generator, GeneratorConfig
    from synthkit.generators.registry import available as available_generators
    from synthkit.generators.registry import create, load
    from synthkit.generators.relational import RelationalSynthesizer, SequentialSynthesizer
    from synthkit.pipeline import Pipeline, PipelineConfig, PipelineResult
    from synthkit.prepare.clean import CleanRules, clean
    from synthkit.prepare.profile import profile
    from synthkit.prepare.split import split_holdout
    from synthkit.relational import ForeignKey, MultiTable
    from synthkit.relational_flow import RelationalPipeline
    from synthkit.relational_io import read_tables
    from synthkit.schema import Column, ColumnKind, PIIKind, Schema, infer_schema


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'synthkit' has no attribute '{name}'")
    module, _, attr = target.partition(":")
    value = getattr(import_module(module), attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
