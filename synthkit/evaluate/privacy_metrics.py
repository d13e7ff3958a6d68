"""The privacy section of a Report: every privacy measure as a Metric, with its meaning and bar.

Which metrics appear depends on what was given: closest-record distances and exact copies
always; the DCR share and membership inference only with holdout rows; k-anonymity only with
quasi-identifiers; anonymeter's risks only when asked for (they are slow and an optional extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from synthkit.evaluate import attacks, privacy
from synthkit.evaluate.report import Metric
from synthkit.schema import Column

#: Suggested bars (informational; a policy decides).
MIA_AUC_BAR = 0.6
NNDR_BAR = 0.5
ANONYMETER_RISK_BAR = 0.1
SHARE_BELOW_K_BAR = 0.05


@dataclass
class PrivacySection:
    """Privacy metrics, the DCR histogram the HTML plots, and notes for the report."""

    metrics: dict[str, Metric] = field(default_factory=dict)
    dcr_distribution: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def privacy_section(
    real_c: pl.DataFrame,
    synth_c: pl.DataFrame,
    hold_c: pl.DataFrame | None,
    real_s: pl.DataFrame,
    synth_s: pl.DataFrame,
    hold_s: pl.DataFrame | None,
    learned: Sequence[Column],
    *,
    seed: int,
    quasi_identifiers: Sequence[str] = (),
    anonymity_k: int = 5,
    anonymeter_attacks: int | None = None,
) -> PrivacySection:
    """Measure every privacy metric the inputs allow.

    Frames are canonical: ``*_c`` all rows, ``*_s`` seeded samples of at most ``max_rows``
    (the distances and attacks use those); the holdout pair is None without a holdout.
    ``anonymeter_attacks`` set runs anonymeter with that many attacks per risk.
    """
    out = PrivacySection()
    out.metrics["privacy.exact_copy_rate"] = _exact_copies(real_c, synth_c, hold_c, len(learned))
    dcr = privacy.closest_records(real_s, synth_s, hold_s, learned, seed=seed)
    out.dcr_distribution = dcr.distribution
    out.metrics |= _closest_record_metrics(dcr)
    if hold_s is not None:
        mia = attacks.membership_inference(real_s, hold_s, synth_s, learned, seed=seed)
        out.metrics |= _membership_metrics(mia)
    if quasi_identifiers:
        out.metrics |= _k_anonymity_metrics(real_c, synth_c, quasi_identifiers, anonymity_k)
    if anonymeter_attacks is not None and hold_s is not None:
        from synthkit.evaluate import anonymity

        risks = anonymity.anonymeter_risks(
            real_s,
            synth_s,
            hold_s,
            learned,
            n_attacks=anonymeter_attacks,
            seed=seed,
            quasi_identifiers=quasi_identifiers,
        )
        out.metrics |= _anonymeter_metrics(risks)
        if len(learned) < 2:
            out.notes.append(
                "privacy.linkability_risk and privacy.attribute_inference_risk need at least two "
                "compared columns: absent."
            )
    return out


# --- copies and distances ---------------------------------------------------------------------
def _exact_copies(
    real_c: pl.DataFrame, synth_c: pl.DataFrame, hold_c: pl.DataFrame | None, n_columns: int
) -> Metric:
    note = f"Rows compared on the {n_columns} learned column(s)."
    if hold_c is not None:
        baseline = privacy.exact_copy_rate(real_c, hold_c)
        note += (
            f" For reference, {baseline:.1%} of holdout rows also equal a training row "
            "(duplicates that occur naturally in this data)."
        )
    return Metric(
        name="privacy.exact_copy_rate",
        section="privacy",
        value=round(privacy.exact_copy_rate(real_c, synth_c), 6),
        meaning="Share of synthetic rows that are exact copies of a real training row.",
        higher_is_better=False,
        threshold=0.01,
        note=note,
    )


def _closest_record_metrics(dcr: privacy.ClosestRecords) -> dict[str, Metric]:
    measured = (
        "Mixed-type distance: numbers scaled by the real 1st-99th percentile range, a category "
        f"mismatch costs 1. Measured for {dcr.n_queries:,} synthetic rows"
    )
    out = {
        "privacy.dcr_median": Metric(
            name="privacy.dcr_median",
            section="privacy",
            value=round(dcr.median, 6),
            meaning="Typical distance from a synthetic row to the closest real training row "
            "(0 means copies; larger means less like any one real person).",
            higher_is_better=True,
            note=f"{measured} against {dcr.n_train:,} training rows.",
        )
    }
    if dcr.nndr_median is not None:
        reference = (
            f" For reference, holdout rows measured against the training rows give "
            f"{dcr.holdout_nndr_median:.3f}."
            if dcr.holdout_nndr_median is not None
            else ""
        )
        out["privacy.nndr_median"] = Metric(
            name="privacy.nndr_median",
            section="privacy",
            value=round(dcr.nndr_median, 6),
            meaning="Typical ratio of a synthetic row's distance to its closest training row over "
            "its distance to the second closest: near 0 means it points at one real record, near "
            "1 that it sits among several alike.",
            higher_is_better=True,
            threshold=NNDR_BAR,
            note=f"{measured} against {dcr.n_train:,} training rows; a row equal to several "
            f"training rows counts 1.{reference}",
        )
    if dcr.share is None or dcr.holdout_median is None:
        return out
    out["privacy.dcr_share"] = Metric(
        name="privacy.dcr_share",
        section="privacy",
        value=round(dcr.share, 6),
        meaning="Share of synthetic rows closer to a training row than to any unseen real row; "
        "about 0.5 is ideal, near 1 means the generator memorised its training data.",
        higher_is_better=False,
        threshold=0.6,
        note=f"Training and holdout compared at equal size ({dcr.n_equal:,} rows each, "
        f"seeded sample); exact ties count one half. {measured}.",
    )
    out["privacy.dcr_holdout_median"] = Metric(
        name="privacy.dcr_holdout_median",
        section="privacy",
        value=round(dcr.holdout_median, 6),
        meaning="Typical distance from a synthetic row to the closest unseen real row: "
        "a reference for privacy.dcr_median.",
        higher_is_better=False,
        note=f"{measured} against {dcr.n_holdout:,} holdout rows.",
    )
    return out


# --- membership inference ---------------------------------------------------------------------
def _membership_metrics(mia: attacks.MembershipInference) -> dict[str, Metric]:
    out = {
        "privacy.mia_distance_auc": Metric(
            name="privacy.mia_distance_auc",
            section="privacy",
            value=round(mia.distance_auc, 6),
            meaning="How well an attacker holding the synthetic data tells training rows from "
            "unseen real rows by how close the nearest synthetic row sits (ROC AUC: 0.5 is "
            "guessing, 1 recognises every training row).",
            higher_is_better=False,
            threshold=MIA_AUC_BAR,
            note=f"{mia.n_members:,} training and {mia.n_non_members:,} holdout rows (seeded "
            f"samples) scored by minus their distance to the closest of {mia.n_synthetic:,} "
            "synthetic rows; mixed-type distance as for privacy.dcr_median.",
        )
    }
    if mia.density_auc is None or mia.bandwidths is None:
        density_value, density_note = None, (
            f"Not computed: the density attack needs at least {attacks.MIN_DENSITY_HOLDOUT} "
            "holdout rows and two synthetic rows."
        )
    else:
        density_value = round(mia.density_auc, 6)
        density_note = (
            "Score: log synthetic density minus log real reference density at the row, both "
            "Gaussian kernel estimates (bandwidth: the median nearest-neighbour distance, "
            f"{mia.bandwidths[0]:.3f} synthetic, {mia.bandwidths[1]:.3f} reference). Reference: "
            f"{mia.n_reference:,} holdout rows; {mia.n_density:,} other holdout rows against as "
            "many training rows."
        )
    out["privacy.mia_density_auc"] = Metric(
        name="privacy.mia_density_auc",
        section="privacy",
        value=density_value,
        meaning="How well an attacker tells training rows from unseen ones by where the synthetic "
        "data is denser than real data (DOMIAS-style ROC AUC: 0.5 is guessing); it catches "
        "generators that overfit without copying.",
        higher_is_better=False,
        threshold=MIA_AUC_BAR,
        note=density_note,
    )
    stronger = "density" if (mia.density_auc or 0.0) > mia.distance_auc else "distance"
    out["privacy.mia_auc"] = Metric(
        name="privacy.mia_auc",
        section="privacy",
        value=round(mia.auc, 6),
        meaning="Membership inference: the stronger of the two attacks' ROC AUC at telling "
        "training rows from unseen real rows; about 0.5 is ideal, near 1 means training rows "
        "can be recognised.",
        higher_is_better=False,
        threshold=MIA_AUC_BAR,
        note=f"The {stronger} attack is the stronger here (privacy.mia_{stronger}_auc).",
    )
    return out


# --- k-anonymity and anonymeter ---------------------------------------------------------------
def _k_anonymity_metrics(
    real_c: pl.DataFrame, synth_c: pl.DataFrame, quasi_identifiers: Sequence[str], k: int
) -> dict[str, Metric]:
    from synthkit.evaluate.anonymity import k_anonymity

    synth = k_anonymity(synth_c, quasi_identifiers, k)
    real = k_anonymity(real_c, quasi_identifiers, k)
    names = ", ".join(quasi_identifiers)
    measured = (
        f"Quasi-identifiers: {names}; exact values, a missing value counts as a value "
        "(generalise the columns first to measure a coarser release)."
    )
    return {
        "privacy.k_anonymity": Metric(
            name="privacy.k_anonymity",
            section="privacy",
            value=float(synth.min_class_size),
            meaning="Smallest number of synthetic rows that share one combination of the "
            "quasi-identifiers (the k of k-anonymity; 1 means some combination is unique).",
            higher_is_better=True,
            threshold=float(k),
            note=f"{synth.n_classes:,} combinations over {synth.n_rows:,} synthetic rows. "
            f"{measured} For reference, the training data has k = {real.min_class_size}.",
        ),
        "privacy.k_anonymity_share_below_k": Metric(
            name="privacy.k_anonymity_share_below_k",
            section="privacy",
            value=round(synth.share_below_k, 6),
            meaning=f"Share of synthetic rows whose quasi-identifier combination is shared by "
            f"fewer than {k} rows (0 means the output is {k}-anonymous).",
            higher_is_better=False,
            threshold=SHARE_BELOW_K_BAR,
            note=f"{measured} For reference, {real.share_below_k:.1%} of training rows are in "
            f"classes smaller than {k}.",
        ),
    }


_ANONYMETER_MEANINGS = {
    "singling_out": "How much better an attacker with the synthetic data singles out one real "
    "training person by a combination of values than one unseen person (anonymeter; 0 is no "
    "excess risk, 1 every attempt succeeds).",
    "linkability": "How much better an attacker with the synthetic data links two partial records "
    "of the same real training person than of an unseen person (anonymeter; 0 is no excess "
    "risk).",
    "attribute_inference": "How much better an attacker with the synthetic data guesses a real "
    "training person's hidden value from the others than an unseen person's (anonymeter, the "
    "worst column; 0 is no excess risk).",
}


def _anonymeter_metrics(risks: dict[str, Any]) -> dict[str, Metric]:
    out = {}
    for key, risk in risks.items():
        name = f"privacy.{key}_risk"
        warned = f" anonymeter warned: {' '.join(risk.warnings)}" if risk.warnings else ""
        out[name] = Metric(
            name=name,
            section="privacy",
            value=round(risk.risk, 6),
            meaning=_ANONYMETER_MEANINGS[key],
            higher_is_better=False,
            threshold=ANONYMETER_RISK_BAR,
            note=f"Attack: {risk.detail}; {risk.n_attacks:,} attacks, 95% interval "
            f"{risk.ci[0]:.3f}-{risk.ci[1]:.3f}. Success on training rows {risk.attack_rate:.1%}, "
            f"on holdout rows {risk.control_rate:.1%}"
            + (f", random guessing {risk.baseline_rate:.1%}." if risk.baseline_rate is not None else ".")
            + warned,
        )
    return out
