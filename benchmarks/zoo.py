"""Model-zoo report: every architecture × method family, time per call and the worst cross-framework figure.

    .venv/bin/python -m benchmarks.zoo                       # every architecture below, 64×64 (75 where required)
    .venv/bin/python -m benchmarks.zoo --torch resnet18 --keras none --size 64

For each torchvision / keras.applications architecture (random weights, calibrated BatchNorm statistics:
``signxai.zoo``) and each method family, one warm call is timed on a batch of one. The architecture is then converted to
the other framework (``convert_torch_to_tf_direct`` / ``convert_tf_to_torch_direct``) and the
docs/equivalence.md#agreement-gates gates (docs/equivalence.md) are measured on the pair: the worst float64 error
relative to the peak (gate 1: ≤ 1e-9) and the worst float32 error relative to its bound (gate 2: ≤ 1). Results:
``benchmarks/results/zoo.md``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

FAMILIES = {"gradient": {}, "gradient_x_sign": {}, "guided_backprop": {}, "deconvnet": {},
            "integrated_gradients": {"steps": 8}, "smoothgrad": {"num_samples": 8}, "vargrad": {"num_samples": 8},
            "grad_cam": {}, "lrp_z": {}, "lrp_epsilon_0_1": {}, "lrpsign_epsilon_0_25_std_x": {},
            "lrp_alpha_1_beta_0": {}, "lrp_sequential_composite_a": {}, "lrp_sequential_composite_b": {},
            "w2lrp_epsilon_0_1": {}, "zblrp_z": {"low": 0.0, "high": 1.0}}
TORCH = ["mobilenet_v3_small", "efficientnet_b0", "regnet_y_400mf", "convnext_tiny", "shufflenet_v2_x1_0",
         "resnet18", "resnet50", "mobilenet_v2", "densenet121", "squeezenet1_1", "vgg16"]
KERAS = ["MobileNetV3Small", "EfficientNetB0", "EfficientNetV2B0", "ConvNeXtTiny", "Xception", "NASNetMobile",
         "VGG16", "ResNet50", "ResNet50V2", "DenseNet121", "InceptionV3", "MobileNetV2"]
MIN_SIZE = {"InceptionV3": 75, "Xception": 71, "InceptionResNetV2": 75}


def _time(model, x, method, kwargs):
    import signxai
    signxai.calculate_relevancemaps(model, x, method, **kwargs)  # warm-up: capture, caches
    start = time.perf_counter()
    maps = signxai.calculate_relevancemaps(model, x, method, **kwargs)
    return time.perf_counter() - start, maps


def _pair_figures(keras_model, torch_model, x_keras, method, kwargs):
    import signxai
    from signxai.common.agreement import check_agreement

    x_torch = np.ascontiguousarray(np.moveaxis(x_keras, -1, 1))
    maps = {}
    for dtype in ("float32", "float64"):
        maps["tf", dtype] = signxai.calculate_relevancemaps(keras_model, x_keras, method, dtype=dtype, **kwargs)
        maps["pt", dtype] = np.moveaxis(signxai.calculate_relevancemaps(torch_model, x_torch, method, dtype=dtype,
                                                                         **kwargs), 1, -1)
    a = check_agreement(maps["tf", "float32"], maps["pt", "float32"], maps["tf", "float64"], maps["pt", "float64"])
    return a.error64 / a.peak if a.peak else 0.0, a.error32 / a.bound32 if a.bound32 else 0.0, a.passed


def _architecture(framework, name, size, families):
    from signxai import zoo

    row = {"framework": framework, "name": name, "times": {}, "gate1": None, "gate2": None, "passed": None,
           "note": ""}
    if framework == "pytorch":
        model, x = zoo.torchvision_model(name, size=size, batch=1)
    else:
        model, x = zoo.keras_application(name, size=max(size, MIN_SIZE.get(name, size)), batch=1)
    for method in families:
        try:
            row["times"][method] = _time(model, x, method, FAMILIES[method])[0]
        except Exception as error:  # reported in the table, not hidden
            row["times"][method] = None
            row["note"] += f"{method}: {type(error).__name__}: {error}; "
    try:
        if framework == "pytorch":
            from signxai.converters.torch_to_tf import convert_torch_to_tf_direct
            torch_model, keras_model = model, convert_torch_to_tf_direct(model, x.shape[1:])
            x_keras = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        else:
            from signxai.converters.direct_tf_to_torch import convert_tf_to_torch_direct
            keras_model, torch_model, x_keras = model, convert_tf_to_torch_direct(model), x
        worst1 = worst2 = 0.0
        passed = True
        for method in families:
            if method == "zblrp_z" and x_keras.max() > 1:
                continue
            g1, g2, ok = _pair_figures(keras_model, torch_model, x_keras, method, FAMILIES[method])
            worst1, worst2, passed = max(worst1, g1), max(worst2, g2), passed and ok
        row.update(gate1=worst1, gate2=worst2, passed=passed)
    except Exception as error:
        row["note"] += f"conversion/agreement: {type(error).__name__}: {str(error)[:200]}"
        if os.environ.get("SIGNXAI_ZOO_TRACEBACK"):
            traceback.print_exc()
    return row


def _table(rows, families):
    head = "| architecture | " + " | ".join(families) + " | worst gate 1 (≤1e-9) | worst gate 2 (≤1) | note |"
    lines = [head, "|" + "---|" * (len(families) + 4)]
    for row in rows:
        times = [f"{row['times'][m] * 1000:.0f}" if row["times"].get(m) is not None else "FAIL" for m in families]
        g1 = f"{row['gate1']:.1e}" if row["gate1"] is not None else "—"
        g2 = f"{row['gate2']:.2f}" if row["gate2"] is not None else "—"
        lines.append(f"| {row['framework']}:{row['name']} | " + " | ".join(times) + f" | {g1} | {g2} | "
                     f"{row['note'].strip() or ''} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torch", default=",".join(TORCH), help="torchvision names, or 'none'")
    parser.add_argument("--keras", default=",".join(KERAS), help="keras.applications names, or 'none'")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "zoo.md")
    args = parser.parse_args(argv)
    import torch  # before TensorFlow (README, known traps)
    import tensorflow  # noqa: F401

    torch.set_num_threads(1)  # alternating with TensorFlow, torch's threads contend with TF's (README, known traps)

    families = [f for f in args.families.split(",") if f]
    rows = []
    for framework, names in (("pytorch", args.torch), ("keras", args.keras)):
        for name in ([] if names == "none" else names.split(",")):
            print(f"{framework}:{name} ...", file=sys.stderr, flush=True)
            rows.append(_architecture(framework, name, args.size, families))
            print(_table(rows[-1:], families), file=sys.stderr, flush=True)
    text = (f"# Model-zoo report\n\nms per call (batch 1, {args.size}×{args.size}, one warm call, torch threads "
            f"{torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}); cross-framework figures on the converted "
            f"pair, worst over the families.\n\n" + _table(rows, families))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
