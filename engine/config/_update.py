"""The ``[update]`` section."""

from dataclasses import dataclass, field

from ._fields import _MINIMUM


@dataclass(frozen=True)
class UpdateOptions:
    """The ``[update]`` section: ``segscale update``, the incremental refresh.

    Attributes
    ----------
    stale_psi : float, default 0.2
        An update marks the saved models stale when the population stability index of any
        feature, the propensity score, P(alive) or CLV from before the update to after it
        passes this (0.2 is the usual "shifted" line): the segments, propensity and value models
        were fitted on a population that no longer looks like this one, and the next
        ``segscale run`` refits them.
    """

    stale_psi: float = field(default=0.2, metadata={_MINIMUM: 0})
