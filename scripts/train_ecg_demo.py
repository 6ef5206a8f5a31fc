"""Train the synthetic 12-lead ECG demo models (docs/ecg.md#demo), deterministically, and save them.

Run from the repository root::

    .venv/bin/python scripts/train_ecg_demo.py MODELS_DIR [--architectures cnn,lstm] [--epochs N] [--n-train 400]

Generates 400 training and 200 held-out records with :func:`signxai.signals.synthetic.make_dataset` (seeds 0 and 1;
normal vs. ST elevation planted in V1-V4), trains the PyTorch CNN and Conv1D + LSTM model of
:data:`signxai.signals.demo.ARCHITECTURES` (Adam; 6 and 8 epochs), builds their Keras twins by copying the weights,
checks that each pair gives the same logits on the held-out records, and writes ``ecg_cnn.pt``, ``ecg_cnn.keras``,
``ecg_lstm.pt``, ``ecg_lstm.keras`` and ``ecg_demo.json`` (accuracies, timings) into MODELS_DIR.
Then ``python -m signxai.signals.demo OUTDIR --models MODELS_DIR`` explains held-out records with them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch  # noqa: F401  (before TensorFlow: README, known traps)

from signxai.signals.demo import ARCHITECTURES, N_TRAIN, train_demo_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--epochs", type=int, default=None, help="override each model's epochs (cnn 6, lstm 8)")
    parser.add_argument("--n-train", type=int, default=N_TRAIN)
    parser.add_argument("--architectures", default=",".join(ARCHITECTURES),
                        help=f"comma-separated ({', '.join(ARCHITECTURES)})")
    args = parser.parse_args()
    train_demo_models(args.outdir, tuple(args.architectures.split(",")), n_train=args.n_train, epochs=args.epochs)


if __name__ == "__main__":
    main()
