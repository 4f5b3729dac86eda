"""Purchases' customer codes: runs of a sorted store part's keys, else a factorization."""

import numpy as np
import pandas as pd
import pytest

from engine.value._summaries import _customer_codes


@pytest.mark.parametrize("keys", [
    ["a", "a", "b", "c", "c", "c"],          # sorted, as a store part's: runs
    ["b", "b", "a", "c", "a"],               # not sorted: factorized
    ["a", None, None, "b"],                  # missing: factorized (code -1)
    ["a"], [],
])  # fmt: skip
@pytest.mark.parametrize("dtype", ["string[pyarrow]", object])
def test_customer_codes_are_the_sorted_factorization(keys, dtype):
    series = pd.Series(keys, dtype=dtype)
    codes, distinct = _customer_codes(series)
    expected_codes, expected = pd.factorize(series, sort=True)
    np.testing.assert_array_equal(codes, expected_codes)
    assert distinct.tolist() == expected.tolist() and distinct.dtype == expected.dtype
