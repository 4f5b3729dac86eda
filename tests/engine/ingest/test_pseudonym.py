"""Pseudonymous keys: their text, and the uint64 values the store's rows carry until written."""

import numpy as np
import pyarrow

import pytest

from engine.ingest._pseudonym import key_bytes, key_numbers, key_order, key_text, pseudonymise

KEY = b"a-test-key-of-some-length"


def test_a_keys_value_gives_back_its_text_and_sorts_as_it():
    ids = [f"customer-{i}" for i in range(500)] + ["", "é" * 40]
    keys, partitions = pseudonymise(ids, KEY, 7)
    values = key_order(keys)
    assert values.dtype == np.uint64
    text = key_text(values)
    assert text.type == pyarrow.large_string() and text.to_pylist() == keys
    assert sorted(keys) == [keys[i] for i in np.argsort(values, kind="stable")]
    # Read back from the text's bytes, in either string type and from a slice: the same values.
    assert key_numbers(text).tolist() == values.tolist()
    assert key_numbers(pyarrow.chunked_array([text.cast(pyarrow.string())[3:]])).tolist() == values[3:].tolist()
    # The partition is the key's value modulo the partitions.
    assert (values % np.uint64(7)).astype(np.int32).tolist() == partitions.tolist()


def test_no_values_are_no_keys():
    assert len(key_text(np.array([], dtype=np.uint64))) == 0
    assert key_order([]).dtype == np.uint64


def test_text_that_is_not_a_key_has_no_bytes_or_number():
    assert key_bytes(pyarrow.array(["k0123456789abcdef", "short"])) is None
    assert key_bytes(pyarrow.array(["k0123456789abcdef", None])) is None
    assert key_bytes(pyarrow.array([], pyarrow.string())).shape == (0, 17)
    with pytest.raises(ValueError, match="17 characters"):
        key_numbers(pyarrow.array(["k1"]))
