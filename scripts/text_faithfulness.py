"""Faithfulness of AttnLRP on the trained evidence transformer (docs/transformers.md#text-faithfulness).

Run from the repository root::

    .venv/bin/python scripts/text_faithfulness.py OUTDIR [--n 500] [--replacement pad|random|both] [--seeds 0 1 2]

writes ``OUTDIR/faithfulness.md`` (the tables), ``faithfulness.png`` (the curves) and ``faithfulness.npz``.
"""
from __future__ import annotations

import torch

from signxai.text_demo import main

if __name__ == "__main__":
    torch.set_num_threads(1)  # deterministic float32 sums on any machine
    raise SystemExit(main())
