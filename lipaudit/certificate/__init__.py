"""Network-level compositions over the graph.

- ``product``: the per-value walk that multiplies per-layer bounds (the baseline certificate).
- ``expansion``: the slope-splitting (LipLT-style) certificate over linear segments, with every
  segment norm a guaranteed bound.
- ``attained``: the other side of the sandwich, a verified lower bound found at real inputs.

Each module says what it proves and where it holds.
"""
