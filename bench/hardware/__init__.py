"""`make report`: the engine's synthesis area and latency next to the paper's Table 11.

area: synthesis per block and variant, and the accounting; blocks: the engine as blocks and
memories; liberty: the libraries mapped onto; yosys: running Yosys, cached by content; latency:
the per-layer tables (the cycle model of hw/cycles.py and the RTL counters of sim/); variants:
the builds compared and the paper's numbers; page: docs/HARDWARE.md and its plot; __main__: the CLI.
"""
