"""People of the synthetic world: archetype, generating parameters, purchase times and truth.

Purchases follow BG/NBD: the first purchase is at acquisition, later ones arrive as a Poisson
process with the person's rate (decaying exponentially for declining customers), and after
every purchase the person drops out for good with probability ``p``. Times are float days
since the window start; the window is ``[0, horizon_days)``.
"""

from dataclasses import dataclass

import numpy as np

from ._archetypes import ARCHETYPES, archetype_table, category_base_weights

TRUTH_HORIZONS_DAYS = (30, 90)


@dataclass
class People:
    """One chunk of people. Arrays of length n unless noted."""

    person_id: np.ndarray  # int64, global
    archetype: np.ndarray  # int8, index into ARCHETYPES
    acquisition_day: np.ndarray
    purchase_rate: np.ndarray  # per day at acquisition
    decline_per_day: np.ndarray
    dropout_p: np.ndarray
    spend_nu: np.ndarray  # Gamma-Gamma rate: mean order value = spend_shape / spend_nu
    spend_shape: np.ndarray
    items_per_order: np.ndarray
    category_mix: np.ndarray  # (n, n_categories)
    channel_mix: np.ndarray  # (n, n_channels)
    discount_propensity: np.ndarray
    return_rate: np.ndarray
    browse_rate: np.ndarray
    abandon_cart_rate: np.ndarray
    email_open_rate: np.ndarray
    email_click_rate: np.ndarray
    ticket_rate: np.ndarray
    alive_at_end: np.ndarray  # bool
    end_of_life_day: np.ndarray  # day of the purchase after which they dropped out; inf if alive
    orders_in_window: np.ndarray  # int32
    # Orders, sorted by (person, day): person index within the chunk and day.
    order_person: np.ndarray
    order_day: np.ndarray


def segment_ranks(counts):
    """Position of each element within its segment, for segments of ``counts`` laid end to end."""
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)


def cumulative_rate(people_rate, decline, acquisition, t_from, t_to):
    """Expected purchases in [t_from, t_to] for rate ``rate * exp(-decline * (t - acquisition))``."""
    span = t_to - t_from
    level = people_rate * np.exp(-decline * (t_from - acquisition))
    safe_decline = np.where(decline > 0, decline, 1.0)
    decayed = level * -np.expm1(-safe_decline * span) / safe_decline
    return np.where(decline > 0, decayed, level * span)


def _day_at_cumulative(people_rate, decline, acquisition, cumulative):
    """Inverse of ``cumulative_rate`` from acquisition: the day by which ``cumulative`` is reached."""
    safe_decline = np.where(decline > 0, decline, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        decayed = acquisition - np.log1p(-safe_decline * cumulative / people_rate) / safe_decline
    return np.where(decline > 0, decayed, acquisition + cumulative / people_rate)


def _beta_around(rng, mean, strength):
    return rng.beta(mean * strength, (1.0 - mean) * strength)


def _dirichlet_rows(rng, concentration):
    """One Dirichlet draw per row of ``concentration`` (n, k)."""
    draws = rng.standard_gamma(concentration) + 1e-12  # tiny shapes can underflow to 0
    return draws / draws.sum(axis=1, keepdims=True)


def _acquisition_days(rng, archetype, horizon_days):
    bounds = np.array([a.acquisition for a in ARCHETYPES])[archetype]
    counted_back = bounds[:, 0] < 0
    low = np.where(counted_back, horizon_days + bounds[:, 0], bounds[:, 0] * horizon_days)
    high = np.where(counted_back, horizon_days, bounds[:, 1] * horizon_days)
    low = np.clip(low, 0.0, horizon_days)
    days = low + rng.random(archetype.size) * (np.maximum(high, low) - low)
    return np.minimum(days, np.nextafter(horizon_days, 0))


def _repeat_purchases(rng, rate, decline, acquisition, horizon_days, dropout_p):
    """Draw repeat purchase days; return (order_person, order_day, alive, orders, end_of_life)."""
    n = rate.size
    expected = cumulative_rate(rate, decline, acquisition, acquisition, horizon_days)
    arrivals = rng.poisson(expected)
    purchases_until_dropout = rng.geometric(dropout_p)  # the k-th purchase is the last
    repeats = np.minimum(arrivals, purchases_until_dropout - 1)
    alive = purchases_until_dropout > arrivals + 1

    # The first `repeats` of `arrivals` sorted uniforms are S_j / S_{N+1} with S the running
    # sum of N+1 unit exponentials: the order statistics without sorting anything.
    spacings_per_person = arrivals + 1
    spacing_end = np.cumsum(spacings_per_person)
    spacing_start = spacing_end - spacings_per_person
    running = np.cumsum(rng.standard_exponential(int(spacing_end[-1])))
    base = np.where(spacing_start > 0, running[np.maximum(spacing_start - 1, 0)], 0.0)
    total = running[spacing_end - 1] - base
    repeat_person = np.repeat(np.arange(n), repeats)
    repeat_rank = segment_ranks(repeats)
    fraction = (running[spacing_start[repeat_person] + repeat_rank] - base[repeat_person]) / total[
        repeat_person
    ]
    repeat_day = _day_at_cumulative(
        rate[repeat_person],
        decline[repeat_person],
        acquisition[repeat_person],
        fraction * expected[repeat_person],
    )
    repeat_day = np.minimum(repeat_day, np.nextafter(horizon_days, 0))

    orders = (repeats + 1).astype(np.int32)
    order_person = np.repeat(np.arange(n), orders)
    order_day = np.empty(order_person.size)
    first_order = np.cumsum(orders) - orders
    is_first = np.zeros(order_person.size, dtype=bool)
    is_first[first_order] = True
    order_day[is_first] = acquisition
    order_day[~is_first] = repeat_day
    last_order_day = order_day[first_order + orders - 1]
    end_of_life = np.where(alive, np.inf, last_order_day)
    return order_person, order_day, alive, orders, end_of_life


def draw_people(rng, first_person_id, n, horizon_days):
    """Draw ``n`` people (ids from ``first_person_id``) and their purchases in the window."""
    params = archetype_table()
    shares = params["share"] / params["share"].sum()
    archetype = rng.choice(len(ARCHETYPES), size=n, p=shares).astype(np.int8)
    arch = {name: values[archetype] for name, values in params.items()}

    rate = rng.gamma(arch["rate_shape"], arch["rate_mean"] / arch["rate_shape"])
    dropout_p = rng.beta(arch["dropout_a"], arch["dropout_b"])
    decline_bounds = np.array([a.decline_per_day for a in ARCHETYPES])[archetype]
    decline = decline_bounds[:, 0] + rng.random(n) * (decline_bounds[:, 1] - decline_bounds[:, 0])
    acquisition = _acquisition_days(rng, archetype, horizon_days)
    spend_nu = rng.gamma(arch["spend_q"], 1.0 / arch["spend_gamma"])

    category_mix = _dirichlet_rows(
        rng, category_base_weights()[archetype] * arch["category_concentration"][:, None]
    )
    channel_weights = np.array([a.channel_weights for a in ARCHETYPES])[archetype]
    channel_mix = _dirichlet_rows(rng, channel_weights * 8.0)

    order_person, order_day, alive, orders, end_of_life = _repeat_purchases(
        rng, rate, decline, acquisition, horizon_days, dropout_p
    )
    return People(
        person_id=np.arange(first_person_id, first_person_id + n, dtype=np.int64),
        archetype=archetype,
        acquisition_day=acquisition,
        purchase_rate=rate,
        decline_per_day=decline,
        dropout_p=dropout_p,
        spend_nu=spend_nu,
        spend_shape=arch["spend_shape"],
        items_per_order=arch["items_per_order"],
        category_mix=category_mix,
        channel_mix=channel_mix,
        discount_propensity=_beta_around(rng, arch["discount_propensity"], 10.0),
        return_rate=_beta_around(rng, arch["return_rate"], 40.0),
        browse_rate=rng.gamma(2.0, arch["browse_sessions_per_day"] / 2.0),
        abandon_cart_rate=_beta_around(rng, arch["abandon_cart_rate"], 10.0),
        email_open_rate=_beta_around(rng, arch["email_open_rate"], 8.0),
        email_click_rate=_beta_around(rng, arch["email_click_rate"], 8.0),
        ticket_rate=arch["ticket_rate"],
        alive_at_end=alive,
        end_of_life_day=end_of_life,
        orders_in_window=orders,
        order_person=order_person,
        order_day=order_day,
    )


def purchase_truth(people, rng, horizon_days, realise_future):
    """True P(at least one purchase) in the days after the window, and optionally the outcome.

    Given the latent state (alive, rate), a purchase in ``(end, end + h]`` happens iff the
    person is alive and the next Poisson arrival comes within ``h`` days.
    """
    truth = {}
    args = (people.purchase_rate, people.decline_per_day, people.acquisition_day)
    for days in TRUTH_HORIZONS_DAYS:
        expected = cumulative_rate(*args, horizon_days, horizon_days + days)
        truth[f"p_purchase_{days}d"] = np.where(people.alive_at_end, -np.expm1(-expected), 0.0)
    if realise_future:
        # Draw the next arrival on the cumulative-rate scale, then map it back to a day.
        already = cumulative_rate(*args, people.acquisition_day, horizon_days)
        next_arrival = already + rng.standard_exponential(people.person_id.size)
        with np.errstate(invalid="ignore"):
            next_day = _day_at_cumulative(*args, next_arrival) - horizon_days
        # A declining rate can run out before the next arrival: then it never comes.
        next_day = np.where(people.alive_at_end & np.isfinite(next_day), next_day, np.nan)
        longest = max(TRUTH_HORIZONS_DAYS)
        truth["days_to_next_purchase"] = np.where(next_day <= longest, next_day, np.nan)
        for days in TRUTH_HORIZONS_DAYS:
            truth[f"purchased_next_{days}d"] = next_day <= days
    return truth
