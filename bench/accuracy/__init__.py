"""`make bench-accuracy`: the paper's Tables 2, 3/6 and 4 on Fashion-MNIST, with our own models.

A benchmark is a grid of cells (network, bits, method, options, seed of the calibration draw).
Each cell calibrates through `workflow.calibrate_network`, evaluates through `workflow.evaluate`
on the test split, and leaves one JSON record in OUT/cells/, so an interrupted benchmark resumes
and cells shared by two tables (the ablation's first and last rows are main-table rows) run once.

cells: the grid and how one cell runs; records: results.csv, and a committed benchmark's cells
and training records taken instead of run again; report: docs/RESULTS.md's tables, targets and
plots; __main__: the CLI (python -m bench.accuracy).
"""
