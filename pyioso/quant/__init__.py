"""Quantizer primitives: uniform grids, observers, rounding (AdaRound), BN folding, fixed-point tables, one layer's quantized float form."""
