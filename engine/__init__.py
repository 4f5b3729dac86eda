"""segscale engine: customer segments, propensity and lifetime value at scale.

The GPU stack (cuDF, cuML, CuPy, dask-cuda) is imported only by ``engine.backend``, and
lazily, so this package imports on machines without CUDA.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("segscale")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
