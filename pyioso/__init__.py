"""pyioso: IOSO post-training quantization ending in integers that golden/ and hw/ reproduce."""

from golden.errors import PyiosoError

__all__ = ["PyiosoError"]
__version__ = "0.1.0"
