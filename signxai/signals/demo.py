"""The ECG demo: a synthetic 12-lead data set, a small 1-D CNN and a Conv1D + LSTM model trained in PyTorch with
their Keras twins, and explanations drawn on the 12-lead plot (docs/ecg.md#demo). Nothing is downloaded.

    python scripts/train_ecg_demo.py MODELS_DIR          # train, build the Keras twin, check the logits, save both
    python -m signxai.signals.demo OUTDIR                # (or: signxai ecg-demo OUTDIR) explain a few records
    python -m signxai.signals.demo OUTDIR --models MODELS_DIR

**Data**: :func:`signxai.signals.synthetic.make_dataset` (10 s at 100 Hz, 12 leads, baseline wander removed), class 1
= ST elevation planted in V1–V4. Training records come from seed :data:`TRAIN_SEED`, held-out ones from
:data:`TEST_SEED`; both are generated again, identically, from the seeds.

**Models** (:data:`ARCHITECTURES`): each entry builds the untrained PyTorch model from a seed and the Keras twin of a
trained one. ``"cnn"`` is three Conv1D(k = 7, 'same') + ReLU blocks (16, 16, 32 filters; max pooling by 2 after the
first two), global average pooling and a Dense layer with 2 logits, defined once as a
:mod:`signxai.converters.spec_models` spec; its Keras twin gets the trained weights copied in Keras layout. The
training seeds come from NumPy generators only (He-initialised weights from the seed, shuffling by
``numpy.random.default_rng``): no global RNG is seeded. ``"lstm"`` is a CRNN: two strided 'valid' Conv1D + ReLU
layers (16 filters, k = 8, stride 4: 1000 samples -> 61 steps), an LSTM(32) and a Dense head on its last hidden
state (:class:`ECGConvLSTM`); its Keras twin (Conv1D, LSTM, Dense) gets the weights copied directly. It trains with
gradient clipping (``Architecture.clip_norm``) for 8 epochs.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from signxai._keras_torch import channels_first
from signxai.loading import InputError, import_keras, load_model, one_line
from signxai.signals.synthetic import CLASS_NAMES, ST_LEADS, make_dataset, st_mask

FS = 100.0
DURATION = 10.0
TRAIN_SEED, TEST_SEED, WEIGHT_SEED = 0, 1, 2
N_TRAIN, N_TEST = 400, 200
DEFAULT_METHODS = ("gradient", "gradient_x_sign", "lrp_epsilon_0_1", "lrpsign_epsilon_0_1")
METADATA = "ecg_demo.json"

CNN_SPEC = {"input_shape": [int(FS * DURATION), 12], "layers": [
    {"kind": "conv1d", "filters": 16, "kernel": 7, "padding": "same", "activation": "relu"},
    {"kind": "maxpool1d", "pool": 2},
    {"kind": "conv1d", "filters": 16, "kernel": 7, "padding": "same", "activation": "relu"},
    {"kind": "maxpool1d", "pool": 2},
    {"kind": "conv1d", "filters": 32, "kernel": 7, "padding": "same", "activation": "relu"},
    {"kind": "gap1d"},
    {"kind": "dense", "units": 2},
]}


@dataclass(frozen=True)
class Architecture:
    """A demo model: ``build_torch(seed)`` returns the untrained PyTorch model (input ``(N, 12, T)``),
    ``keras_twin(torch_model)`` the Keras model (input ``(N, T, 12)``) with the same weights; ``methods`` limits the
    explained methods (None: all of the demo's); ``epochs`` and ``clip_norm`` are its training recipe
    (:func:`train_torch`)."""

    name: str
    build_torch: Callable
    keras_twin: Callable
    methods: tuple | None = None
    description: str = ""
    epochs: int = 6
    clip_norm: float | None = None


def _cnn_torch(seed: int):
    from signxai.converters.spec_models import build_torch_model, random_weights

    return build_torch_model(CNN_SPEC, random_weights(CNN_SPEC, seed=seed, bias_scale=0.0)).train()


def _cnn_keras(torch_model):
    from signxai.converters.spec_models import build_keras_model

    return build_keras_model(CNN_SPEC, keras_layout_weights(torch_model))


def keras_layout_weights(torch_model) -> dict:
    """``"<layer>/<param>"`` → Keras-layout arrays from a spec-built PyTorch ``Sequential`` (Conv1d, Linear)."""
    import torch

    from signxai._keras_torch import conv_kernel_to_keras, dense_kernel_to_keras

    weights = {}
    for name, module in torch_model.named_children():
        if isinstance(module, torch.nn.Conv1d):
            weights[f"{name}/kernel"] = conv_kernel_to_keras(module.weight.detach().cpu().numpy())
        elif isinstance(module, torch.nn.Linear):
            weights[f"{name}/kernel"] = dense_kernel_to_keras(module.weight.detach().cpu().numpy())
        else:
            continue
        if module.bias is not None:
            weights[f"{name}/bias"] = module.bias.detach().cpu().numpy()
    return weights


# The recurrent model (docs/ecg.md#demo): a CRNN as ECG models are built. Two strided 'valid' convolutions shorten
# the 1000 samples to 61 steps (k = 8, stride 4 twice: 1000 -> 249 -> 61), an LSTM reads them and its last hidden
# state feeds the Dense head. 'valid' padding because PyTorch has no 'same' padding for strides > 1 and Keras pads
# 'same' asymmetrically.
LSTM_CONV = ((16, 8, 4), (16, 8, 4))  # (filters, kernel, stride) per Conv1D
LSTM_UNITS = 32


def _crnn_module_class():
    import torch

    class ECGConvLSTM(torch.nn.Module):
        """Conv1D(16, k=8, stride 4) + ReLU, twice, → LSTM(32) over the 61 steps → Linear(2) on the last state.
        Input ``(N, 12, T)``."""

        def __init__(self):
            super().__init__()
            (filters1, kernel1, stride1), (filters2, kernel2, stride2) = LSTM_CONV
            self.conv1 = torch.nn.Conv1d(12, filters1, kernel1, stride=stride1)
            self.conv2 = torch.nn.Conv1d(filters1, filters2, kernel2, stride=stride2)
            self.lstm = torch.nn.LSTM(filters2, LSTM_UNITS, batch_first=True)
            self.head = torch.nn.Linear(LSTM_UNITS, 2)

        def forward(self, x):
            x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
            sequence, _ = self.lstm(x.transpose(1, 2))
            return self.head(sequence[:, -1])

    return ECGConvLSTM


def __getattr__(name):  # the module class is defined lazily (importing this module loads no framework)
    if name == "ECGConvLSTM":  # once: pickle (torch.save / torch.load of the whole module) finds it by name
        cls = globals().get(name) or _crnn_module_class()
        cls.__module__, cls.__qualname__ = __name__, name
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _lstm_torch(seed: int):
    """The untrained CRNN with weights drawn from ``numpy.random.default_rng(seed)`` (the global torch RNG is left
    alone: the constructor's own draws happen inside ``torch.random.fork_rng``): He-normal convolutions, PyTorch's
    U(±1/√H) for the LSTM with the forget-gate bias at 1, Glorot-uniform head, zero conv and head biases."""
    import torch

    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        model = __getattr__("ECGConvLSTM")()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            shape = tuple(parameter.shape)
            if name.startswith("conv") and name.endswith("weight"):
                value = rng.normal(0.0, np.sqrt(2.0 / (shape[1] * shape[2])), shape)
            elif name.startswith("lstm"):
                bound = 1.0 / np.sqrt(LSTM_UNITS)
                value = rng.uniform(-bound, bound, shape)
                if name.startswith("bias_ih"):
                    value[LSTM_UNITS:2 * LSTM_UNITS] = 1.0  # gates i, f, g, o: forget bias 1
            elif name == "head.weight":
                bound = np.sqrt(6.0 / (shape[0] + shape[1]))
                value = rng.uniform(-bound, bound, shape)
            else:
                value = np.zeros(shape)
            parameter.copy_(torch.from_numpy(value.astype(np.float32)))
    return model.train()


def _lstm_keras(torch_model):
    """The Keras twin: Conv1D(strides, 'valid', ReLU) ×2 → LSTM(32) (last state) → Dense(2), weights copied:
    conv kernels in Keras layout, LSTM ``kernel = W_ihᵀ``, ``recurrent_kernel = W_hhᵀ``, ``bias = b_ih + b_hh``
    (gate order i, f, g/c, o in both frameworks; docs/converters.md#recurrent)."""
    from signxai._keras_torch import conv_kernel_to_keras, dense_kernel_to_keras

    keras = import_keras()

    def numpy(parameter):
        return parameter.detach().cpu().numpy()

    layers: list = [keras.Input((int(FS * DURATION), 12))]
    for index, (filters, kernel, stride) in enumerate(LSTM_CONV, 1):
        layers.append(keras.layers.Conv1D(filters, kernel, strides=stride, padding="valid", activation="relu",
                                          name=f"conv{index}"))
    lstm = keras.layers.LSTM(LSTM_UNITS, name="lstm")
    head = keras.layers.Dense(2, name="head")
    model = keras.Sequential(layers + [lstm, head], name="ecg_lstm")
    for index in range(1, len(LSTM_CONV) + 1):
        conv = getattr(torch_model, f"conv{index}")
        model.get_layer(f"conv{index}").set_weights([conv_kernel_to_keras(numpy(conv.weight)), numpy(conv.bias)])
    cell = torch_model.lstm
    lstm.set_weights([numpy(cell.weight_ih_l0).T, numpy(cell.weight_hh_l0).T,
                      numpy(cell.bias_ih_l0) + numpy(cell.bias_hh_l0)])
    head.set_weights([dense_kernel_to_keras(numpy(torch_model.head.weight)), numpy(torch_model.head.bias)])
    return model


ARCHITECTURES = {
    "cnn": Architecture("cnn", _cnn_torch, _cnn_keras, None,
                        "3 x Conv1D(k=7) + ReLU (16, 16, 32 filters), max pooling, global average pooling, Dense(2)"),
    "lstm": Architecture("lstm", _lstm_torch, _lstm_keras, None,
                         "2 x Conv1D(16, k=8, stride 4) + ReLU (1000 -> 61 steps), LSTM(32), last state, Dense(2)",
                         epochs=8, clip_norm=1.0),
}


# ------------------------------------------------------------------------------------------------------- training
def train_torch(model, x, y, epochs: int = 6, batch_size: int = 32, lr: float = 3e-3, seed: int = TRAIN_SEED,
                clip_norm: float | None = None):
    """Adam on cross-entropy; ``x`` channels-first. Batches are shuffled by ``numpy.random.default_rng(seed)``;
    ``clip_norm`` clips the gradient's global norm before each step (the LSTM's recipe)."""
    import torch

    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    inputs, labels = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(order[start:start + batch_size])
            optimiser.zero_grad()
            loss = loss_fn(model(inputs[batch]), labels[batch])
            loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            optimiser.step()
    return model.eval()


def _logits_torch(model, x_channels_first) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x_channels_first))).double().numpy()


def train_demo_models(outdir, architectures=("cnn", "lstm"), n_train: int = N_TRAIN, n_test: int = N_TEST,
                      epochs: int | None = None, verbose: bool = True) -> dict:
    """Generate the data, train each architecture in PyTorch, build its Keras twin, check that the logits agree
    (max |Δ| ≤ 1e-4 · max|logit| on the held-out set, else a RuntimeError) and save ``ecg_<name>.pt`` (the whole
    pickled module), ``ecg_<name>.keras`` and :data:`METADATA` in ``outdir``. Returns the metadata (accuracies,
    seconds, logit differences). ``epochs`` overrides each architecture's own number of epochs."""
    import torch  # before TensorFlow (README, known traps)

    keras = import_keras()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    x_train, y_train, _ = make_dataset(n_train, TRAIN_SEED, DURATION, FS)
    x_test, y_test, _ = make_dataset(n_test, TEST_SEED, DURATION, FS)
    data_seconds = time.perf_counter() - start
    meta: dict[str, Any] = {"fs": FS, "duration_s": DURATION, "leads": list(_leads()), "class_names": list(CLASS_NAMES),
            "train_seed": TRAIN_SEED, "test_seed": TEST_SEED, "n_train": n_train, "n_test": n_test,
            "data_seconds": round(data_seconds, 2), "torch_threads": torch.get_num_threads(), "models": {}}
    for name in architectures:
        arch = ARCHITECTURES[name]
        start = time.perf_counter()
        arch_epochs = arch.epochs if epochs is None else epochs
        model = train_torch(arch.build_torch(WEIGHT_SEED), channels_first(x_train), y_train, epochs=arch_epochs,
                            clip_norm=arch.clip_norm)
        seconds = time.perf_counter() - start
        keras_model = arch.keras_twin(model)
        logits_pt = _logits_torch(model, channels_first(x_test))
        logits_tf = keras.ops.convert_to_numpy(keras_model(x_test, training=False)).astype(np.float64)
        difference = float(np.abs(logits_pt - logits_tf).max() / np.abs(logits_pt).max())
        if difference > 1e-4:
            raise RuntimeError(f"the Keras twin of {name!r} differs from the PyTorch model by {difference:.3g} of "
                               f"the largest logit")
        train_accuracy = float((_logits_torch(model, channels_first(x_train)).argmax(1) == y_train).mean())
        test_accuracy = float((logits_pt.argmax(1) == y_test).mean())
        torch.save(model, outdir / f"ecg_{name}.pt")
        keras_model.save(outdir / f"ecg_{name}.keras")
        meta["models"][name] = {"description": arch.description, "train_accuracy": train_accuracy,
                                "test_accuracy": test_accuracy, "train_seconds": round(seconds, 2),
                                "epochs": arch_epochs, "logit_max_rel_diff": difference,
                                "methods": list(arch.methods) if arch.methods else None}
        if verbose:
            print(f"{name}: trained in {seconds:.1f} s, accuracy train {train_accuracy:.3f} / held-out "
                  f"{test_accuracy:.3f}, Keras twin logits max rel diff {difference:.2g}")
    (outdir / METADATA).write_text(json.dumps(meta, indent=1))
    return meta


def _leads():
    from signxai.signals.io import STANDARD_LEADS

    return STANDARD_LEADS


# ------------------------------------------------------------------------------------------------------- the demo
def demo_records(n: int):
    """``(x, y, peaks)`` of ``n`` held-out records (seed :data:`TEST_SEED`), class 1 and class 0 alternating."""
    x, y, peaks = make_dataset(max(2 * n, 4), TEST_SEED, DURATION, FS)
    ones, zeros = list(np.flatnonzero(y == 1)), list(np.flatnonzero(y == 0))
    chosen = [(ones if i % 2 == 0 else zeros).pop(0) for i in range(n)]
    return x[chosen], y[chosen], [peaks[i] for i in chosen]


def run_demo(outdir, models_dir=None, records: int = 2, methods=DEFAULT_METHODS, frameworks=("torch", "keras"),
             layout: str = "4x3", verbose: bool = True) -> dict:
    """Explain ``records`` held-out records with ``methods`` on each demo model in ``frameworks`` and write, in
    ``outdir``: one 12-lead plot per record, method, model and framework (``<model>_rec<i>_<method>_<fw>.png``),
    ``per_lead.csv`` (:func:`signxai.signals.aggregate.per_lead` of every map) and ``summary.json``.

    ``models_dir`` holds what :func:`train_demo_models` wrote; without it the models are trained into
    ``outdir/models`` first (15-45 s on 2 cores). The summary gives per model and method the largest
    difference between the Keras and PyTorch maps (relative to max|R|) and, for the ST-elevation records, the share
    of |R| in the planted leads V1–V4 and in the planted ST segments (:func:`signxai.signals.synthetic.st_mask`).
    """
    import torch  # before TensorFlow (README, known traps)

    import signxai
    from signxai.signals.aggregate import as_time_by_leads_map, per_lead
    from signxai.signals.plot import plot_ecg

    outdir = Path(outdir)
    if records < 1:
        raise InputError("--records must be at least 1")
    for framework in frameworks:
        if framework not in ("torch", "keras"):
            raise InputError(f"unknown framework {framework!r}: torch or keras")
    for method in methods:
        signxai.methods.parse_method(method)
    if models_dir is None:
        models_dir = outdir / "models"
        if not (models_dir / METADATA).is_file():
            train_demo_models(models_dir, verbose=verbose)
    models_dir = Path(models_dir)
    if not (models_dir / METADATA).is_file():
        raise InputError(f"{models_dir} holds no {METADATA}: train the models with scripts/train_ecg_demo.py "
                         f"{models_dir}")
    meta = json.loads((models_dir / METADATA).read_text())
    leads, fs = tuple(meta["leads"]), float(meta["fs"])
    outdir.mkdir(parents=True, exist_ok=True)
    x, y, peaks = demo_records(records)
    time_axis = np.arange(x.shape[1]) / fs
    rows: list[dict] = []
    summary: dict[str, Any] = {"models": {}, "records": [int(label) for label in y]}
    planted = [st_mask(time_axis, peaks[i]) for i in range(len(x)) if y[i] == 1]
    if planted:  # the shares of |R| that a map spread evenly over the record would give
        summary["chance_share_in_V1_V4"] = len(ST_LEADS) / len(leads)
        summary["chance_share_in_planted_st"] = float(np.mean([mask.mean() for mask in planted]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # interleaved with TensorFlow, torch's worker threads make calls 10-30x slower
    try:
        for name, info in meta["models"].items():
            suffixes = {"torch": "pt", "keras": "keras"}
            loaded: dict[str, Any] = {fw: load_model(models_dir / f"ecg_{name}.{suffixes[fw]}").model
                                      for fw in ("torch", "keras") if fw in frameworks}
            predictions = _logits_torch(loaded["torch"], channels_first(x)).argmax(1) if "torch" in loaded else \
                np.asarray(loaded["keras"](x, training=False)).argmax(1)
            allowed = info.get("methods")
            model_summary = summary["models"].setdefault(name, {"predictions": predictions.tolist(), "methods": {}})
            for method in methods:
                if allowed is not None and not any(method.startswith(a) for a in allowed):
                    continue
                maps = {}
                for framework, model in loaded.items():
                    inputs = channels_first(x) if framework == "torch" else x
                    relevance = signxai.calculate_relevancemaps(model, inputs, method)
                    for i in range(len(x)):
                        layout_of = "channels_first" if framework == "torch" else "channels_last"
                        maps[framework, i] = as_time_by_leads_map(relevance[i], layout_of, x[i].shape)
                        title = (f"{name} ({framework}), {method}: record {i}, {CLASS_NAMES[y[i]]}, predicted "
                                 f"{CLASS_NAMES[predictions[i]]}")
                        figure = plot_ecg(x[i], relevance[i], fs, leads, layout=layout, relevance_layout=layout_of,
                                          title=title, save=outdir / f"{name}_rec{i}_{method}_{framework}.png")
                        figure.clear()
                        table = per_lead(maps[framework, i], leads)
                        for lead in range(len(leads)):
                            rows.append({"model": name, "record": i, "label": CLASS_NAMES[y[i]],
                                         "predicted": CLASS_NAMES[predictions[i]], "method": method,
                                         "framework": framework, "lead": leads[lead],
                                         **{key: f"{table[key][lead]:.6g}" for key in
                                            ("sum", "mean_abs", "positive", "negative", "share_abs")}})
                model_summary["methods"][method] = _method_summary(maps, x, y, peaks, time_axis, leads)
    finally:
        torch.set_num_threads(threads)
    with open(outdir / "per_lead.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (outdir / "summary.json").write_text(json.dumps(summary, indent=1))
    if verbose:
        print(_summary_text(summary))
        if planted:
            print(f"(an evenly spread map: {summary['chance_share_in_V1_V4']:.2f} in V1-V4, "
                  f"{summary['chance_share_in_planted_st']:.2f} in the planted ST segments, 0.25 in the last "
                  f"quarter)")
        print(f"wrote {len(rows) // len(leads)} plots, per_lead.csv and summary.json to {outdir}")
    return summary


def _method_summary(maps, x, y, peaks, time_axis, leads) -> dict:
    st_columns = [leads.index(name) for name in ST_LEADS]
    out = {}
    frameworks = sorted({fw for fw, _ in maps})
    if len(frameworks) == 2:
        out["keras_vs_torch_max_rel_diff"] = max(
            float(np.abs(maps["keras", i] - maps["torch", i]).max() / (np.abs(maps["torch", i]).max() or 1.0))
            for i in range(len(x)))
    framework = "torch" if "torch" in frameworks else frameworks[0]
    st_records = [i for i in range(len(x)) if y[i] == 1]
    if st_records:
        lead_share, segment_share, last_share = [], [], []
        for i in st_records:
            magnitude = np.abs(maps[framework, i])
            total = magnitude.sum() or 1.0
            lead_share.append(magnitude[:, st_columns].sum() / total)
            segment_share.append(magnitude[st_mask(time_axis, peaks[i])].sum() / total)
            last_share.append(magnitude[3 * len(magnitude) // 4:].sum() / total)
        out["st_records_share_in_V1_V4"] = float(np.mean(lead_share))
        out["st_records_share_in_planted_st"] = float(np.mean(segment_share))
        out["st_records_share_in_last_quarter"] = float(np.mean(last_share))  # an LSTM's recency
    return out


def _summary_text(summary) -> str:
    lines = [f"{'model':<6} {'method':<24} {'|R| in V1-V4':>13} {'|R| in ST':>10} {'last 1/4':>9} "
             f"{'Keras vs PyTorch':>17}"]
    for name, model in summary["models"].items():
        for method, values in model["methods"].items():
            share = values.get("st_records_share_in_V1_V4")
            segment = values.get("st_records_share_in_planted_st")
            diff = values.get("keras_vs_torch_max_rel_diff")
            last = values.get("st_records_share_in_last_quarter")
            lines.append(f"{name:<6} {method:<24} {'' if share is None else f'{share:.2f}':>13} "
                         f"{'' if segment is None else f'{segment:.2f}':>10} "
                         f"{'' if last is None else f'{last:.2f}':>9} "
                         f"{'' if diff is None else f'{diff:.2g}':>17}")
    lines.append("(shares of |R| on the ST-elevation records, PyTorch maps: in the planted leads, in the planted ST "
                 "segments, in the record's last quarter; Keras vs PyTorch: max|R_tf - R_pt| / max|R_pt|)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- command line
def configure_parser(parser) -> None:
    """The demo's arguments (for ``signxai ecg-demo`` and ``python -m signxai.signals.demo``)."""
    parser.add_argument("outdir", type=Path, help="folder for the plots, per_lead.csv and summary.json")
    parser.add_argument("--models", type=Path, metavar="DIR",
                        help="models written by scripts/train_ecg_demo.py (default: train them into OUTDIR/models)")
    parser.add_argument("--records", type=int, default=2, help="held-out records to explain (default 2: one with "
                                                               "ST elevation, one normal)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated method names (default {','.join(DEFAULT_METHODS)})")
    parser.add_argument("--framework", choices=("both", "torch", "keras"), default="both")
    parser.add_argument("--layout", choices=("4x3", "12x1"), default="4x3")
    parser.set_defaults(command=run_from_args)


def add_parser(commands) -> None:
    """Register ``signxai ecg-demo`` on the sub-command parsers of the command line (``signxai.cli``)."""
    parser = commands.add_parser(
        "ecg-demo", help="explain synthetic 12-lead ECGs with a demo CNN and LSTM in PyTorch and Keras (no download)",
        description="Train (or load, --models) the synthetic 12-lead ECG demo models (normal vs. ST elevation in "
                    "V1-V4), explain held-out records with SIGN, LRP and gradient methods in both frameworks, and "
                    "write one 12-lead plot per record, method and framework, per_lead.csv and summary.json.")
    configure_parser(parser)


def run_from_args(args) -> int:
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    frameworks = ("torch", "keras") if args.framework == "both" else (args.framework,)
    run_demo(args.outdir, args.models, args.records, methods, frameworks, args.layout)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m signxai.signals.demo", description=__doc__.split("\n\n")[0])
    configure_parser(parser)
    args = parser.parse_args(argv)
    try:
        return args.command(args)
    except (InputError, ValueError) as error:
        print(f"signxai: error: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
