"""Benchmarks and reports, on top of everything else: `hardware` (make report: area, latency,
Table 11) and `accuracy` (make bench-accuracy: the paper's accuracy tables)."""
