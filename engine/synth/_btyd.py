"""Customer summaries drawn from the BG/NBD and MBG/NBD models themselves.

Where the world tests the whole pipeline, these draws test the estimators alone: a fit on
them should return the parameters they were drawn with, up to sampling error.
"""

import numpy as np

__all__ = ["simulate_btyd_summaries"]


def simulate_btyd_summaries(n: int, params: dict, rng: np.random.Generator, *, model: str = "bgnbd",
                            t_max: float = 400.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """``(frequency, recency, T)`` of ``n`` customers with ``params`` r, alpha, a, b (vectorised).

    T is uniform on [t_max / 4, t_max]. With ``model="mbgnbd"`` a customer may also drop out
    right after the first purchase.
    """
    lam = rng.gamma(params["r"], 1 / params["alpha"], n)
    p = rng.beta(params["a"], params["b"], n)
    T = rng.uniform(t_max / 4, t_max, n)
    # Purchases until dropout, the first one (at time 0) included: geometric on {1, 2, ...}.
    last = rng.geometric(p)
    repeats_allowed = last - 1 if model == "mbgnbd" else last
    arrivals = rng.poisson(lam * T)
    frequency = np.minimum(arrivals, repeats_allowed)
    # Given N arrivals in (0, T], the k-th is the k-th of N sorted uniforms: its max has a Beta(k, N-k+1) law.
    recency = np.where(frequency > 0, T * rng.beta(np.maximum(frequency, 1), arrivals - frequency + 1), 0.0)
    return frequency.astype(float), recency, T
