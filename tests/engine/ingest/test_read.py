"""How an input is opened: the CSV reader's arguments on each backend."""

import dask
import pytest

from engine.config import InputSpec
from engine.exceptions import InputDataError
from engine.ingest._read import _encoding


def _spec(encoding):
    return InputSpec(table="transactions", path="/data/tx.csv", format="csv", encoding=encoding)


def test_utf8_needs_no_argument_so_that_cudf_which_has_none_reads_it():
    assert _encoding(_spec("utf-8")) == _encoding(_spec("UTF8")) == {}
    with dask.config.set({"dataframe.backend": "cudf"}):
        assert _encoding(_spec("utf-8")) == {}


def test_another_encoding_is_passed_on_the_cpu_and_refused_on_the_gpu():
    assert _encoding(_spec("latin-1")) == {"encoding": "latin-1"}
    with dask.config.set({"dataframe.backend": "cudf"}), pytest.raises(InputDataError, match="reads UTF-8 text only"):
        _encoding(_spec("latin-1"))
