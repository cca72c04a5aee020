"""Calibration: the fake-quant network, ISG, block reconstruction (RTN/AdaRound/BRECQ/QDrop/IOSO), export, run folders."""
