"""pyioso: IOSO post-training quantization ending in integers that golden/ and hw/ reproduce.

The library API (pyioso.api) loads on first use, so `import pyioso` and the CLI's start stay light:
quantize, load, Calibration, IntegerNetwork.
"""

from golden.errors import PyiosoError

__all__ = ["Calibration", "IntegerNetwork", "PyiosoError", "load", "quantize"]
__version__ = "0.1.0"
_API = {"Calibration", "IntegerNetwork", "load", "quantize"}


def __getattr__(name: str):
    if name in _API:
        from pyioso import api

        return getattr(api, name)
    raise AttributeError(f"module 'pyioso' has no attribute {name!r}")
