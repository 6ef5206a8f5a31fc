"""Faithfulness of AttnLRP on the trained digits ViT (docs/transformers.md#faithfulness).

Run from the repository root::

    .venv/bin/python scripts/transformer_faithfulness.py OUTDIR [--n 500] [--seed 0]

writes ``OUTDIR/faithfulness.md`` (the table), ``faithfulness.png`` (the curves) and ``faithfulness.npz``.
"""
from __future__ import annotations

import torch

from signxai.vit_demo import main

if __name__ == "__main__":
    torch.set_num_threads(1)  # deterministic float32 sums on any machine
    raise SystemExit(main())
