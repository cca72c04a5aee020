"""Bit-exact integer reference of docs/ARCHITECTURE.md, in torch.

Every op takes and returns integer code tensors (NHWC activations). `golden.meaning` holds the
float meaning of the same layers, for checking that the integers approximate the real layer
within the error the spec predicts.
"""

from golden.layers import Add, AvgPool, Conv, MaxPool, Requant, activation_bounds, channel_codes, check_hw_grouping
from golden.ops import (accumulate, avg_pool, conv, group_partial_sums, isg_combine, linear, max_pool, requantize,
                        residual_add)

__all__ = [
    "Add", "AvgPool", "Conv", "MaxPool", "Requant", "activation_bounds", "channel_codes", "check_hw_grouping",
    "accumulate", "avg_pool", "conv", "group_partial_sums", "isg_combine", "linear",
    "max_pool", "requantize", "residual_add",
]
