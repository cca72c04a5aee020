"""`make report`: the engine's synthesis area and latency next to the paper's Table 11.

cycles: the analytical cycle model; area: Yosys synthesis per block and variant; latency: the
per-layer tables (model and RTL counters); page: docs/HARDWARE.md and its plot; __main__: the CLI.
Kept out of hw/'s top level on purpose: the simulator build cache hashes the RTL sources there.
"""
