"""BG/NBD, MBG/NBD, Pareto/NBD and Gamma-Gamma: likelihoods, fits, refusals and predictions."""

import dataclasses
import math

import numpy as np
import pytest
from scipy.special import betaln, gammaln

from engine.exceptions import InputDataError, UsageError
from engine.synth import simulate_btyd_summaries
from engine.value import (
    bgnbd_log_likelihood,
    conditional_expected_purchases,
    conditional_expected_spend,
    degeneracies,
    expected_repeat_purchases,
    fit_gamma_gamma,
    fit_purchase_model,
    gamma_gamma_log_likelihood,
    p_alive,
    p_no_purchase_given_alive,
    pareto_nbd_log_likelihood,
    waiting_time_quantile,
)

TRUE = {"r": 0.8, "alpha": 20.0, "a": 1.2, "b": 6.0}


def _reference_likelihood(params, x, tx, T):
    """FHL 2005 eq. 6 written with Beta functions, one customer at a time."""
    r, alpha, a, b = params
    total = 0.0
    for xi, ti, Ti in zip(x, tx, T):
        rate = math.exp(gammaln(r + xi) - gammaln(r) + r * math.log(alpha))
        alive = math.exp(betaln(a, b + xi) - betaln(a, b)) * rate / (alpha + Ti) ** (r + xi)
        dropped = math.exp(betaln(a + 1, b + xi - 1) - betaln(a, b)) * rate / (alpha + ti) ** (r + xi) if xi else 0.0
        total += math.log(alive + dropped)
    return total


def test_likelihood_matches_the_paper_formula_on_a_tiny_input():
    x, tx, T = np.array([0.0, 1, 4, 2]), np.array([0.0, 10, 30, 5]), np.array([40.0, 40, 35, 50])
    params = (0.5, 12.0, 0.9, 3.0)
    ours = bgnbd_log_likelihood(params, x, tx, T, np.ones(4), np)
    assert ours == pytest.approx(_reference_likelihood(params, x, tx, T), rel=1e-12)
    # Hand-checked: a customer without repeats contributes r log(alpha / (alpha + T)).
    single = bgnbd_log_likelihood(params, x[:1], tx[:1], T[:1], np.ones(1), np)
    assert single == pytest.approx(0.5 * math.log(12 / 52), rel=1e-12)


def test_collapsed_rows_give_the_same_likelihood_and_fit():
    rng = np.random.default_rng(1)
    x, tx, T = simulate_btyd_summaries(3000, TRUE, rng)
    x, tx, T = x, np.round(tx), np.ceil(T / 50) * 50  # coarse: many repeated rows
    weights = np.ones_like(T)
    doubled = bgnbd_log_likelihood(tuple(TRUE.values()), x, tx, T, 2 * weights, np)
    stacked = bgnbd_log_likelihood(tuple(TRUE.values()), *(np.tile(v, 2) for v in (x, tx, T)), np.ones(6000), np)
    assert doubled == pytest.approx(stacked, rel=1e-12)
    fit = fit_purchase_model(x, tx, T)
    assert fit.distinct_rows < 3000 and fit.customers == 3000
    assert fit.log_likelihood == pytest.approx(bgnbd_log_likelihood(tuple(fit.params.values()), x, tx, T, weights, np))
    by_weight = fit_purchase_model(np.tile(x, 2), np.tile(tx, 2), np.tile(T, 2))
    halved = fit_purchase_model(x, tx, T, weights=2 * weights)
    assert halved.params == pytest.approx(by_weight.params, rel=1e-6)


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd"])
def test_fit_recovers_the_generating_parameters(model):
    x, tx, T = simulate_btyd_summaries(20_000, TRUE, np.random.default_rng(7), model=model)
    fit = fit_purchase_model(x, tx, T, model=model)
    assert fit.success and fit.iterations > 0
    for name, value in TRUE.items():
        assert fit.params[name] == pytest.approx(value, rel=0.12), name


def test_standard_errors_match_the_spread_of_estimates_over_resamples():
    fits = [fit_purchase_model(*simulate_btyd_summaries(3000, TRUE, np.random.default_rng(100 + seed))) for seed in range(40)]
    estimates = np.array([list(fit.params.values()) for fit in fits])
    errors = np.array([list(fit.standard_errors.values()) for fit in fits])
    ratio = estimates.std(axis=0, ddof=1) / errors.mean(axis=0)
    assert np.all((0.65 < ratio) & (ratio < 1.5)), ratio
    # Four times the customers, half the error.
    bigger = fit_purchase_model(*simulate_btyd_summaries(12_000, TRUE, np.random.default_rng(7)))
    shrink = np.array(list(bigger.standard_errors.values())) / errors.mean(axis=0)
    assert np.all((0.4 < shrink) & (shrink < 0.6)), shrink


def test_plain_bgnbd_is_biased_when_customers_can_leave_after_their_first_purchase():
    x, tx, T = simulate_btyd_summaries(20_000, TRUE, np.random.default_rng(7), model="mbgnbd")
    plain, modified = fit_purchase_model(x, tx, T), fit_purchase_model(x, tx, T, model="mbgnbd")
    assert modified.log_likelihood > plain.log_likelihood
    assert abs(plain.params["r"] / TRUE["r"] - 1) > 0.2


@pytest.mark.parametrize(
    "frequency, recency, T, reason",
    [
        ([], [], [], "no customers"),
        ([0, 0, 0], [0, 0, 0], [10, 20, 30], "0 of 3 customers bought again"),
        ([1, 2, 3], [1, 2, 3], [10, 20, 30], "every customer bought again"),
        ([1, 0], [20, 0], [10, 20], "recency <= T"),
    ],
)
def test_fit_refuses_data_that_cannot_support_it(frequency, recency, T, reason):
    with pytest.raises(InputDataError, match=reason):
        fit_purchase_model(np.array(frequency, float), np.array(recency, float), np.array(T, float), min_repeat_customers=1)


def test_fit_refuses_too_few_repeat_buyers_and_unknown_models():
    x, tx, T = simulate_btyd_summaries(500, TRUE, np.random.default_rng(3))
    with pytest.raises(InputDataError, match="fewer than the 100000 needed"):
        fit_purchase_model(x, tx, T, min_repeat_customers=100_000)
    with pytest.raises(UsageError, match="unknown purchase model"):
        fit_purchase_model(x, tx, T, model="pareto")


def test_predictions_agree_with_monte_carlo_over_the_posterior():
    params = {"r": 1.5, "alpha": 30.0, "a": 1.4, "b": 5.0}
    x, tx, T, t = np.array([0.0, 3.0]), np.array([0.0, 60.0]), np.array([100.0, 120.0]), 90.0
    rng = np.random.default_rng(0)
    for model, extra in (("bgnbd", 0), ("mbgnbd", 1)):
        alive = p_alive(params, x, tx, T, np, model)
        expected = conditional_expected_purchases(params, t, x, tx, T, np, model)
        for i in range(2):
            # Given alive: lambda ~ Gamma(r + x, alpha + T), p ~ Beta(a, b + x + extra);
            # purchases in t until dropout: E = (1 - exp(-lambda p t)) / p.
            lam = rng.gamma(params["r"] + x[i], 1 / (params["alpha"] + T[i]), 400_000)
            p = rng.beta(params["a"], params["b"] + x[i] + extra, 400_000)
            given_alive = np.mean(-np.expm1(-lam * p * t) / p)
            assert expected[i] == pytest.approx(alive[i] * given_alive, rel=0.01)
    assert p_alive(params, x, tx, T)[0] == 1.0 and p_alive(params, x, tx, T, model="mbgnbd")[0] < 1.0


def test_waiting_time_quantiles_invert_the_lomax_law():
    params = {"r": 2.0, "alpha": 40.0}
    x, T = np.array([3.0]), np.array([100.0])
    median = waiting_time_quantile(params, 0.5, x, T)
    assert ((140 / (140 + median)) ** 5)[0] == pytest.approx(0.5)
    within = waiting_time_quantile(params, 0.8, x, T, within=30.0)
    share = (1 - (140 / (140 + within)) ** 5) / (1 - (140 / 170) ** 5)
    assert within[0] < 30 and share[0] == pytest.approx(0.8)


def test_gamma_gamma_recovers_its_parameters_and_refuses_bad_spend():
    rng = np.random.default_rng(5)
    n, p, q, gamma = 20_000, 4.0, 3.0, 40.0
    nu = rng.gamma(q, 1 / gamma, n)
    x = rng.integers(1, 8, n).astype(float)
    monetary = rng.gamma(p * x, 1 / (nu * x))  # the mean of x Gamma(p, nu) values
    fit = fit_gamma_gamma(x, monetary)
    assert fit.success
    assert fit.params == pytest.approx({"p": p, "q": q, "gamma": gamma}, rel=0.1)
    for name, value in {"p": p, "q": q, "gamma": gamma}.items():
        assert 0 < fit.standard_errors[name] < 0.1 * value
        assert abs(fit.params[name] - value) < 4 * fit.standard_errors[name], name
    assert fit.log_likelihood == pytest.approx(
        gamma_gamma_log_likelihood(tuple(fit.params.values()), x, monetary, np.ones(n), np)
    )
    spend = conditional_expected_spend(fit.params, np.array([0.0, 5.0]), np.array([0.0, 100.0]))
    assert spend[0] == pytest.approx(fit.params["p"] * fit.params["gamma"] / (fit.params["q"] - 1))
    with pytest.raises(InputDataError, match="not positive"):
        fit_gamma_gamma(x, np.where(np.arange(n) == 0, -1.0, monetary))
    with pytest.raises(InputDataError, match="spends the same"):
        fit_gamma_gamma(x, np.ones(n))
    with pytest.raises(InputDataError, match="fewer than 100"):
        fit_gamma_gamma(x[:10], monetary[:10])


def test_a_fit_to_customers_who_never_drop_out_is_flagged_degenerate():
    """What Online Retail's holdout looked like to BG/NBD: 'converged', no dropout to learn,
    P(alive) about 1 for everyone; the fit says it is degenerate instead."""
    rng = np.random.default_rng(0)
    rate, T = rng.gamma(0.8, 1 / 20.0, 5_000), rng.uniform(100, 400, 5_000)
    arrivals = rng.poisson(rate * T)
    recency = np.where(arrivals > 0, T * rng.beta(np.maximum(arrivals, 1), 1), 0.0)
    fit = fit_purchase_model(arrivals.astype(float), recency, T)
    assert fit.success and degeneracies(fit) and fit.to_dict()["degenerate"] == degeneracies(fit)
    healthy = fit_purchase_model(*simulate_btyd_summaries(20_000, TRUE, np.random.default_rng(7)))
    assert degeneracies(healthy) == [] and healthy.to_dict()["degenerate"] == []


def test_degeneracies_name_the_parameter_and_why():
    fit = fit_purchase_model(*simulate_btyd_summaries(5_000, TRUE, np.random.default_rng(1)))
    unpinned = dataclasses.replace(fit, standard_errors={**fit.standard_errors, "b": 20 * fit.params["b"]})
    assert degeneracies(unpinned) == [
        f"b = {fit.params['b']:.4g} has a standard error of {20 * fit.params['b']:,.4g}, 20x the estimate"
    ]
    bounded = dataclasses.replace(fit, at_bound=("a",))
    assert degeneracies(bounded) == [f"a sits at the optimiser's bound ({fit.params['a']:.3g})"]
    nothing = dataclasses.replace(fit, standard_errors=dict.fromkeys(fit.params))
    assert degeneracies(nothing) == [
        "the data do not pin the parameters down (the information matrix is not positive definite)"
    ]


@pytest.mark.parametrize("model", ["bgnbd", "mbgnbd"])
def test_expected_repeat_purchases_match_simulation(model):
    """E[X(t)] of a new customer, against the mean repeat purchases of customers simulated
    from the same parameters, each for their own T."""
    x, _, T = simulate_btyd_summaries(200_000, TRUE, np.random.default_rng(0), model=model)
    expected = expected_repeat_purchases(TRUE, T, model)
    assert expected.mean() == pytest.approx(x.mean(), rel=0.01)
    assert expected_repeat_purchases(TRUE, np.array([0.0, -5.0]), model).tolist() == [0.0, 0.0]


PARETO = {"r": 0.55, "alpha": 10.6, "s": 0.61, "beta": 11.7}


def _simulate_pareto_nbd(n, params, rng):
    """Summaries of customers drawn from Pareto/NBD, each watched for T days after their first
    purchase: Poisson purchases at lambda until an exponential lifetime at mu ends."""
    T = rng.uniform(30, 730, n)
    lam, mu = rng.gamma(params["r"], 1 / params["alpha"], n), rng.gamma(params["s"], 1 / params["beta"], n)
    watched = np.minimum(rng.exponential(1 / mu), T)
    x = rng.poisson(lam * watched).astype(float)
    # The last of x purchases spread uniformly over the time watched.
    tx = np.where(x > 0, watched * rng.beta(np.maximum(x, 1), 1), 0.0)
    return x, tx, T


def test_pareto_nbd_likelihood_is_its_defining_integral():
    """Fader & Hardie (2005) eq. 19 with I(t_x, T) integrated numerically; a customer with 200
    repeat purchases, whose terms underflow in that form, stays finite in ours."""
    from scipy.integrate import quad

    for params in (PARETO, {"r": 2.0, "alpha": 3.0, "s": 1.5, "beta": 80.0}):
        r, alpha, s, beta = params.values()
        for x, tx, T in ((0, 0.0, 30.0), (3, 20.0, 60.0), (40, 100.0, 120.0), (5, 50.0, 50.0)):
            integral = quad(lambda u: (alpha + u) ** -(r + x) * (beta + u) ** -(s + 1), tx, T, epsabs=0, epsrel=1e-12)[0]
            direct = (gammaln(r + x) - gammaln(r) + r * math.log(alpha) + s * math.log(beta)
                      + math.log((alpha + T) ** -(r + x) * (beta + T) ** -s + s * integral))  # fmt: skip
            ours = pareto_nbd_log_likelihood(tuple(params.values()), *(np.array([v], float) for v in (x, tx, T)), np.ones(1))
            assert ours == pytest.approx(direct, rel=1e-10)
        heavy = pareto_nbd_log_likelihood(tuple(params.values()), np.array([200.0]), np.array([300.0]),
                                          np.array([400.0]), np.ones(1))  # fmt: skip
        assert np.isfinite(heavy)


def test_pareto_nbd_fit_recovers_the_generating_parameters():
    x, tx, T = _simulate_pareto_nbd(20_000, PARETO, np.random.default_rng(7))
    fit = fit_purchase_model(x, tx, T, model="pareto_nbd")
    assert fit.success and not fit.at_bound and degeneracies(fit) == []
    for name, value in PARETO.items():
        assert abs(fit.params[name] - value) < 4 * fit.standard_errors[name], name
    # BG/NBD on the same customers fits worse: dropout here happens between purchases too.
    assert fit.log_likelihood > fit_purchase_model(x, tx, T).log_likelihood


def test_pareto_nbd_predictions_agree_with_monte_carlo_over_the_posterior():
    """P(alive), expected purchases and P(no purchase | alive) against the prior's draws
    weighted by each draw's likelihood of the customer's summary."""
    params = {"r": 1.5, "alpha": 30.0, "s": 0.8, "beta": 40.0}
    x, tx, T, t = np.array([0.0, 3.0, 12.0]), np.array([0.0, 60.0, 50.0]), np.array([100.0, 120.0, 200.0]), 90.0
    alive = p_alive(params, x, tx, T, np, "pareto_nbd")
    expected = conditional_expected_purchases(params, t, x, tx, T, np, "pareto_nbd")
    quiet = p_no_purchase_given_alive(params, t, x, T, np, "pareto_nbd")
    rng = np.random.default_rng(0)
    lam, mu = rng.gamma(params["r"], 1 / params["alpha"], 2_000_000), rng.gamma(params["s"], 1 / params["beta"], 2_000_000)
    for i in range(3):
        both = lam + mu
        # P(x repeats, last at t_x | lambda, mu), split into alive at T and dropped after t_x.
        alive_term = lam ** x[i] * np.exp(-both * T[i])
        dropped_term = lam ** x[i] * mu / both * (np.exp(-both * tx[i]) - np.exp(-both * T[i]))
        weight = alive_term + dropped_term
        assert alive[i] == pytest.approx(alive_term.sum() / weight.sum(), rel=0.01)
        assert expected[i] == pytest.approx((alive_term * lam / mu * -np.expm1(-mu * t)).sum() / weight.sum(), rel=0.02)
        none_in_t = np.exp(-both * t) + mu / both * -np.expm1(-both * t)
        assert quiet[i] == pytest.approx((alive_term * none_in_t).sum() / alive_term.sum(), rel=0.01)


def test_pareto_nbd_expected_repeat_purchases_match_simulation():
    x, _, T = _simulate_pareto_nbd(200_000, PARETO, np.random.default_rng(0))
    assert expected_repeat_purchases(PARETO, T, "pareto_nbd").mean() == pytest.approx(x.mean(), rel=0.02)
    assert expected_repeat_purchases(PARETO, np.array([0.0]), "pareto_nbd").tolist() == [0.0]
