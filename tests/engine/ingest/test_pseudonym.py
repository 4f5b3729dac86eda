"""Pseudonymous keys: their text, and the uint64 values the store's rows carry until written."""

import numpy as np
import pyarrow

from engine.ingest._pseudonym import key_order, key_text, pseudonymise

KEY = b"a-test-key-of-some-length"


def test_a_keys_value_gives_back_its_text_and_sorts_as_it():
    ids = [f"customer-{i}" for i in range(500)] + ["", "é" * 40]
    keys, partitions = pseudonymise(ids, KEY, 7)
    values = key_order(keys)
    assert values.dtype == np.uint64
    text = key_text(values)
    assert text.type == pyarrow.large_string() and text.to_pylist() == keys
    assert sorted(keys) == [keys[i] for i in np.argsort(values, kind="stable")]
    # The partition is the key's value modulo the partitions.
    assert (values % np.uint64(7)).astype(np.int32).tolist() == partitions.tolist()


def test_no_values_are_no_keys():
    assert len(key_text(np.array([], dtype=np.uint64))) == 0
    assert key_order([]).dtype == np.uint64
