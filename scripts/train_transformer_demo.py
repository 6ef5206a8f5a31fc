"""Train the small digits ViT of :mod:`signxai.vit_demo` and store it in ``signxai/data/demo_vit_digits.npz``.

Run from the repository root (seeded; a second run writes the same weights on the same machine)::

    .venv/bin/python scripts/train_transformer_demo.py
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from signxai import vit_demo

OUT = Path(__file__).resolve().parents[1] / "signxai" / "data" / vit_demo.WEIGHTS


def main():
    torch.set_num_threads(1)  # deterministic and fast on a shared CPU
    start = time.perf_counter()
    model, accuracy = vit_demo.train()
    seconds = time.perf_counter() - start
    weights = {f"w:{k}": v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    np.savez_compressed(OUT, accuracy=np.float64(accuracy), **weights)
    print(f"trained in {seconds:.1f} s; held-out accuracy {accuracy:.3f} on {vit_demo.N_TEST} digits -> {OUT}")


if __name__ == "__main__":
    main()
