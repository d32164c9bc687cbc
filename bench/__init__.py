"""RankScope benchmarks (``make bench`` = ``python -m bench.run``).

Every performance figure is a ratio measured side by side in one run: variants are interleaved in
rounds and the median of the per-round ratios is reported, so a noisy machine shifts numerator and
denominator together. ``bench.summary.record`` is how a benchmark adds rows to the final table.
"""
