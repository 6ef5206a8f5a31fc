"""LRP-ε through an LSTM against the framework's own gradient (docs/layers.md#recurrent): a 12-lead ECG-like
input (1, T, 12) → LSTM(hidden) → Dense/Linear(5), random weights.

    .venv/bin/python -m benchmarks.recurrent --framework pytorch --length 5000
    .venv/bin/python -m benchmarks.recurrent --framework tensorflow --length 500

Per framework, in one process: the framework's gradient (PyTorch ``torch.autograd.grad`` on the module in eval mode;
TensorFlow a ``GradientTape`` inside a ``tf.function``) and ``signxai.calculate_relevancemap(model, x,
"lrp_epsilon_0_1")``, each called once untimed (graph capture, tracing), then ``--repeats`` times; the medians and
their ratio are printed. The unrolled graph has about 16 nodes per time step, so the LRP pass costs grow with T.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _timed(function, repeats):
    first = time.perf_counter()
    function()
    first = time.perf_counter() - first
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def torch_case(length, hidden, repeats):
    import numpy as np
    import torch
    from torch import nn

    import signxai

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(12, hidden, batch_first=True)
            self.fc = nn.Linear(hidden, 5)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.fc(out[:, -1])
    torch.manual_seed(0)
    model = Net().eval()
    x = np.random.RandomState(0).normal(size=(1, length, 12)).astype(np.float32)

    def gradient():
        xt = torch.from_numpy(x).requires_grad_(True)
        (grad,) = torch.autograd.grad(model(xt)[:, 0].sum(), xt)
        return grad.numpy()
    return (_timed(gradient, repeats),
            _timed(lambda: signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1", target=0), repeats))


def tf_case(length, hidden, repeats):
    import keras
    import numpy as np
    import tensorflow as tf

    import signxai
    inputs = keras.Input((length, 12))
    model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.LSTM(hidden)(inputs)))
    x = np.random.RandomState(0).normal(size=(1, length, 12)).astype(np.float32)

    @tf.function
    def tape(x):
        with tf.GradientTape() as g:
            g.watch(x)
            y = model(x, training=False)[:, 0]
        return g.gradient(y, x)
    return (_timed(lambda: tape(tf.constant(x)).numpy(), repeats),
            _timed(lambda: signxai.calculate_relevancemap(model, x, "lrp_epsilon_0_1", target=0), repeats))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", choices=("pytorch", "tensorflow"), default="pytorch")
    parser.add_argument("--length", type=int, default=5000)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    case = torch_case if args.framework == "pytorch" else tf_case
    (grad_first, grad), (lrp_first, lrp) = case(args.length, args.hidden, args.repeats)
    print(f"{args.framework} LSTM({args.hidden}) on (1, {args.length}, 12): framework gradient {grad * 1e3:.1f} ms "
          f"(first call {grad_first:.2f} s); signxai lrp_epsilon_0_1 {lrp * 1e3:.1f} ms (first call "
          f"{lrp_first:.2f} s, capture and tracing included); ratio {lrp / grad:.1f}x (target <= 2x)")


if __name__ == "__main__":
    main()
