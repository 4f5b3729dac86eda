"""Pseudonymous customer keys: a keyed hash of the resolved customer id.

The key comes from the config or ``SEGSCALE_PSEUDONYM_KEY`` and is never written anywhere,
so outputs cannot be joined back to source ids without it. The same key and inputs give
the same keys on every run and on both backends; the store partition of a customer is
derived from its key, so every table puts a customer in the same partition.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from ..exceptions import UsageError

__all__ = ["KEY_ENV_VAR", "key_bytes", "key_numbers", "key_order", "key_text", "pseudonym_key", "pseudonymise"]

KEY_ENV_VAR = "SEGSCALE_PSEUDONYM_KEY"
_MIN_KEY_LENGTH = 8
# Characters in a customer key: "k" and 16 hex digits.
KEY_WIDTH = 17
# The two hex digits of each byte value, as one uint16 each: a key's text is 8 lookups.
_HEX_PAIRS = np.frombuffer(b"".join(f"{byte:02x}".encode() for byte in range(256)), dtype=np.uint16)
# Each hex digit's character (a byte) to its value: reading a key's text back is 16 lookups.
_HEX_DIGITS = np.zeros(256, np.uint8)
_HEX_DIGITS[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16)


def pseudonym_key(configured: str | None) -> bytes:
    """The hashing key: the config's, else the environment's; a clear error when neither."""
    key = configured or os.environ.get(KEY_ENV_VAR)
    if not key:
        raise UsageError(
            f"no pseudonymisation key: set the {KEY_ENV_VAR} environment variable "
            "(or [ingest] pseudonym_key in the config, for synthetic data only)"
        )
    if len(key) < _MIN_KEY_LENGTH:
        raise UsageError(f"the pseudonymisation key must be at least {_MIN_KEY_LENGTH} characters")
    # BLAKE2b takes keys of up to 64 bytes; hash longer ones down rather than truncate them.
    raw = key.encode()
    return raw if len(raw) <= 64 else hashlib.sha256(raw).digest()


def pseudonymise(ids, key: bytes, partitions: int):
    """Keys and store partitions for distinct resolved ids (a host-side sequence of str).

    Returns
    -------
    keys : list of str
        ``"k"`` and 16 hex digits of BLAKE2b-64 keyed with ``key``.
    partition : numpy.ndarray of int32
        The key's value modulo ``partitions``.
    """
    digests = [hashlib.blake2b(value.encode(), key=key, digest_size=8).digest() for value in ids]
    keys = ["k" + digest.hex() for digest in digests]
    numbers = np.frombuffer(b"".join(digests), dtype=">u8") if digests else np.empty(0, ">u8")
    return keys, (numbers % np.uint64(partitions)).astype(np.int32)


def key_order(keys) -> np.ndarray:
    """The 64-bit values of keys made by :func:`pseudonymise`, as uint64: they sort as the
    keys' text does (fixed-width lowercase hex), and numbers sort several times faster."""
    return np.array([int(key[1:], 16) for key in keys], dtype=np.uint64)


def key_text(values: np.ndarray):
    """The keys (a pyarrow large_string array) whose :func:`key_order` values are ``values``.

    Built from the bytes, without a Python str per row: the store's rows carry their key as a
    number until they are written (8 bytes a row instead of 17 bytes of text and an offset).
    """
    import pyarrow

    octets = np.ascontiguousarray(values, dtype=">u8").view(np.uint8).reshape(-1, 8)
    text = np.empty((len(octets), KEY_WIDTH), dtype=np.uint8)
    text[:, 0] = ord("k")
    text[:, 1:] = _HEX_PAIRS[octets].view(np.uint8).reshape(-1, 16)
    offsets = np.arange(0, KEY_WIDTH * (len(octets) + 1), KEY_WIDTH, dtype=np.int64)
    return pyarrow.Array.from_buffers(
        pyarrow.large_string(), len(octets), [None, pyarrow.py_buffer(offsets), pyarrow.py_buffer(text)]
    )


def key_bytes(keys) -> np.ndarray | None:
    """The text of keys (a pyarrow array) as an (n, ``KEY_WIDTH``) uint8 array, read from the
    Arrow buffer without a Python str per key; None unless every key is there and
    ``KEY_WIDTH`` bytes long."""
    import pyarrow

    keys = keys.combine_chunks() if isinstance(keys, pyarrow.ChunkedArray) else keys
    if keys.null_count:
        return None
    try:
        fixed = keys.cast(pyarrow.binary(KEY_WIDTH))  # refuses any other width
    except pyarrow.ArrowInvalid:
        return None
    if not len(fixed):
        return np.empty((0, KEY_WIDTH), dtype=np.uint8)
    text = np.frombuffer(fixed.buffers()[1], np.uint8, KEY_WIDTH * len(fixed), KEY_WIDTH * fixed.offset)
    return text.reshape(-1, KEY_WIDTH)


def key_numbers(keys) -> np.ndarray:
    """:func:`key_order` of keys (a pyarrow array), read from the bytes of their text: the
    inverse of :func:`key_text`, without a Python str per key.

    Raises
    ------
    ValueError
        A key that :func:`pseudonymise` did not make (missing, or of another width).
    """
    text = key_bytes(keys)
    if text is None:
        raise ValueError(f"customer keys must be {KEY_WIDTH} characters, as segscale makes them")
    digits = _HEX_DIGITS[text[:, 1:]]
    return ((digits[:, 0::2] << 4) | digits[:, 1::2]).view(">u8").ravel().astype(np.uint64)
