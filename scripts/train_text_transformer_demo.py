"""Train the evidence transformer of :mod:`signxai.text_demo` and store it in ``signxai/data/demo_text_evidence.npz``.

Run from the repository root (seeded; a second run writes the same weights on the same machine)::

    .venv/bin/python scripts/train_text_transformer_demo.py
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from signxai import text_demo

OUT = Path(__file__).resolve().parents[1] / "signxai" / "data" / text_demo.WEIGHTS


def main():
    torch.set_num_threads(1)  # deterministic and fast on a shared CPU
    start = time.perf_counter()
    model, trained_accuracy = text_demo.train()
    seconds = time.perf_counter() - start
    # matrices stored in float16 (the file stays small); the stored model is what the study explains, so its
    # accuracy is measured again on the rounded weights
    weights = {f"w:{k}": v.detach().numpy().astype(np.float16 if v.ndim > 1 else np.float32)
               for k, v in model.state_dict().items()}
    model.load_state_dict({k[2:]: torch.from_numpy(v.astype(np.float32)) for k, v in weights.items()})
    ids, labels, _ = text_demo.load_test_sequences()
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(ids)).argmax(1).numpy() == labels).mean())
    np.savez_compressed(OUT, accuracy=np.float64(accuracy), **weights)
    print(f"trained in {seconds:.1f} s; held-out accuracy {trained_accuracy:.3f} on {text_demo.N_TEST} sequences, "
          f"{accuracy:.3f} with float16 weights -> {OUT}")


if __name__ == "__main__":
    main()
