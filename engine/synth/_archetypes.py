"""The planted behavioural archetypes of the synthetic world and their generating parameters.

Each archetype is a BG/NBD-style buyer (Poisson purchase rate with Gamma heterogeneity,
Beta-distributed dropout after each purchase) with Gamma-Gamma spend, plus the browsing,
email and service habits that make its events. Rates are per day.
"""

from dataclasses import dataclass, fields

import numpy as np

CATEGORIES = (
    "apparel", "home", "beauty", "electronics", "grocery", "sports",
    "books", "toys", "garden", "pets", "jewelry", "health",
)  # fmt: skip
# Global popularity: a long tail, so that "top-k categories" features have something to rank.
CATEGORY_POPULARITY = np.array([0.18, 0.14, 0.12, 0.11, 0.10, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03, 0.02])

PURCHASE_CHANNELS = ("web", "app", "store", "marketplace")
REGIONS = ("north", "south", "east", "west", "central", "coastal", "islands", "overseas")
REGION_WEIGHTS = np.array([0.2, 0.18, 0.16, 0.15, 0.12, 0.1, 0.05, 0.04])
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
GENDERS = ("female", "male", "non-binary", "undisclosed")
GENDER_WEIGHTS = np.array([0.49, 0.47, 0.01, 0.03])


@dataclass(frozen=True)
class Archetype:
    """Generating parameters of one archetype.

    Purchase rate ``lambda ~ Gamma(rate_shape, mean rate_mean)``; dropout after each
    purchase ``p ~ Beta(dropout_a, dropout_b)``; order value ``~ Gamma(spend_shape, rate nu)``
    with ``nu ~ Gamma(spend_q, rate spend_gamma)``; acquisition uniform over the fraction
    ``acquisition`` of the window (negative start: counted back from the end, in days).
    """

    name: str
    share: float
    rate_mean: float
    rate_shape: float
    dropout_a: float
    dropout_b: float
    decline_per_day: tuple[float, float]  # uniform range of the exponential rate decay
    acquisition: tuple[float, float]
    spend_shape: float
    spend_q: float
    spend_gamma: float
    items_per_order: float
    category_concentration: float
    category_tilt: tuple[str, ...]  # categories this archetype over-buys
    channel_weights: tuple[float, float, float, float]  # web, app, store, marketplace
    discount_propensity: float  # mean share of orders bought on discount
    return_rate: float  # share of lines returned
    browse_sessions_per_day: float  # sessions without a purchase while active
    abandon_cart_rate: float  # share of those sessions that add to cart
    email_open_rate: float
    email_click_rate: float  # given an open
    ticket_rate: float  # support tickets per order
    age_weights: tuple[float, float, float, float, float, float]


ARCHETYPES = (
    Archetype(
        "loyal_high_value", 0.12, rate_mean=1 / 12, rate_shape=4.0, dropout_a=1.0, dropout_b=60.0,
        decline_per_day=(0.0, 0.0), acquisition=(0.0, 0.5), spend_shape=6.0, spend_q=5.0,
        spend_gamma=70.0, items_per_order=2.2, category_concentration=6.0,
        category_tilt=("electronics", "apparel", "jewelry"), channel_weights=(0.3, 0.5, 0.15, 0.05),
        discount_propensity=0.08, return_rate=0.04, browse_sessions_per_day=0.01,
        abandon_cart_rate=0.25, email_open_rate=0.45, email_click_rate=0.35, ticket_rate=0.02,
        age_weights=(0.04, 0.18, 0.27, 0.25, 0.17, 0.09),
    ),
    Archetype(
        "deal_seeker", 0.22, rate_mean=1 / 24, rate_shape=2.5, dropout_a=1.0, dropout_b=24.0,
        decline_per_day=(0.0, 0.0), acquisition=(0.0, 0.8), spend_shape=4.0, spend_q=4.0,
        spend_gamma=20.0, items_per_order=1.8, category_concentration=2.0,
        category_tilt=("grocery", "home", "beauty"), channel_weights=(0.45, 0.2, 0.05, 0.3),
        discount_propensity=0.75, return_rate=0.07, browse_sessions_per_day=0.02,
        abandon_cart_rate=0.45, email_open_rate=0.40, email_click_rate=0.45, ticket_rate=0.03,
        age_weights=(0.14, 0.26, 0.22, 0.17, 0.13, 0.08),
    ),
    Archetype(
        "new_customer", 0.12, rate_mean=1 / 20, rate_shape=2.0, dropout_a=1.0, dropout_b=12.0,
        decline_per_day=(0.0, 0.0), acquisition=(-90.0, 0.0), spend_shape=4.0, spend_q=4.0,
        spend_gamma=45.0, items_per_order=1.6, category_concentration=3.0,
        category_tilt=("apparel", "beauty"), channel_weights=(0.5, 0.35, 0.1, 0.05),
        discount_propensity=0.35, return_rate=0.06, browse_sessions_per_day=0.03,
        abandon_cart_rate=0.35, email_open_rate=0.35, email_click_rate=0.3, ticket_rate=0.04,
        age_weights=(0.25, 0.3, 0.2, 0.12, 0.08, 0.05),
    ),
    Archetype(
        "declining", 0.16, rate_mean=1 / 10, rate_shape=3.0, dropout_a=1.0, dropout_b=40.0,
        decline_per_day=(1 / 220, 1 / 90), acquisition=(0.0, 0.3), spend_shape=5.0, spend_q=4.0,
        spend_gamma=40.0, items_per_order=1.7, category_concentration=3.0,
        category_tilt=("home", "garden", "books"), channel_weights=(0.3, 0.15, 0.5, 0.05),
        discount_propensity=0.2, return_rate=0.05, browse_sessions_per_day=0.008,
        abandon_cart_rate=0.3, email_open_rate=0.15, email_click_rate=0.2, ticket_rate=0.06,
        age_weights=(0.03, 0.1, 0.18, 0.25, 0.26, 0.18),
    ),
    Archetype(
        "dormant", 0.18, rate_mean=1 / 18, rate_shape=2.0, dropout_a=3.0, dropout_b=5.0,
        decline_per_day=(0.0, 0.0), acquisition=(0.0, 0.5), spend_shape=4.0, spend_q=4.0,
        spend_gamma=40.0, items_per_order=1.4, category_concentration=2.0,
        category_tilt=("toys", "sports"), channel_weights=(0.45, 0.15, 0.3, 0.1),
        discount_propensity=0.25, return_rate=0.08, browse_sessions_per_day=0.002,
        abandon_cart_rate=0.2, email_open_rate=0.05, email_click_rate=0.1, ticket_rate=0.05,
        age_weights=(0.12, 0.2, 0.2, 0.18, 0.17, 0.13),
    ),
    Archetype(
        "browser", 0.20, rate_mean=1 / 120, rate_shape=1.5, dropout_a=1.0, dropout_b=9.0,
        decline_per_day=(0.0, 0.0), acquisition=(0.0, 0.8), spend_shape=3.0, spend_q=4.0,
        spend_gamma=30.0, items_per_order=1.2, category_concentration=0.8,
        category_tilt=("electronics", "sports", "health"), channel_weights=(0.5, 0.45, 0.02, 0.03),
        discount_propensity=0.3, return_rate=0.1, browse_sessions_per_day=0.08,
        abandon_cart_rate=0.4, email_open_rate=0.2, email_click_rate=0.3, ticket_rate=0.02,
        age_weights=(0.22, 0.32, 0.2, 0.13, 0.08, 0.05),
    ),
)  # fmt: skip

ARCHETYPE_NAMES = tuple(archetype.name for archetype in ARCHETYPES)


def archetype_table() -> dict[str, np.ndarray]:
    """Each scalar parameter as an array indexed by archetype number (for vectorised draws)."""
    table = {}
    for spec in fields(Archetype):
        values = [getattr(archetype, spec.name) for archetype in ARCHETYPES]
        if spec.name in ("name", "category_tilt"):
            continue
        table[spec.name] = np.asarray(values, dtype=np.float64)
    return table


def category_base_weights() -> np.ndarray:
    """Per-archetype mean category mix, shape (n_archetypes, n_categories), rows sum to 1."""
    weights = np.tile(CATEGORY_POPULARITY, (len(ARCHETYPES), 1))
    for row, archetype in enumerate(ARCHETYPES):
        for category in archetype.category_tilt:
            weights[row, CATEGORIES.index(category)] *= 3.0
    return weights / weights.sum(axis=1, keepdims=True)
