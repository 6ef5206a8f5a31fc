"""AttnLRP on ViT-B/16: signxai against the framework's own plain gradient, and against LXT on PyTorch (issue 20's
speed targets: AttnLRP ≤ 1.5× the gradient at batches 1 and 8 on both frameworks, faster than LXT on the same PyTorch
model in the same run, peak memory ≤ 2× the gradient's). docs/performance.md#attention.

    .venv/bin/python -m benchmarks.attention                       # both frameworks, batches 1 and 8, 3 repeats
    .venv/bin/python -m benchmarks.attention --frameworks pytorch --batch 1 --repeats 2

* **PyTorch**: torchvision ``vit_b_16(weights=None)`` (seeded random weights, the zero-initialised head re-drawn),
  224×224, 197 tokens. ``torch:autograd``: ``torch.autograd.grad`` of the selected logits; ``signxai``:
  ``calculate_relevancemap(model, x, METHOD)`` with ``METHOD = lrp_epsilon_0_1`` (AttnLRP: the ε rule at every
  linear layer and LRP's attention rules); ``lxt``: LXT 2.1's efficient AttnLRP (its ``non_linear_forward`` on
  ``nn.GELU``, ``layer_norm_forward`` on ``nn.LayerNorm``, ``wrap_attention_forward`` on
  ``nn.MultiheadAttention``; Input×Gradient), patched around each call and restored after it, as in
  tests/test_lxt_oracle.py. LXT is optional: without it its rows are absent.
* **Keras** (TensorFlow): a ViT-B/16-sized Keras model (there is no keras_hub ViT that signxai captures yet): a
  16×16/16 ``Conv2D`` patch projection to 768, a class token and a learned positional table (197 tokens; the token is
  written as a zero row plus the table, the same numbers as torchvision's concat and sum), 12 pre-LN
  blocks (``LayerNormalization``, ``MultiHeadAttention(12, 64)``, exact-erf GELU MLP 768→3072→768, residual sums), a
  final LayerNorm, the class token and a 1000-way head; seeded random weights. ``tf:tape_function``: a
  ``GradientTape`` inside a ``tf.function``.

Every signxai/LXT timed call is paired with a gradient call right before it (the same load), as in
``benchmarks.run``; the ratio is the median over the paired gradient's median. Peak memory is ``VmHWM`` growth of one
steady call (``benchmarks.worker.peak_mb``; on TensorFlow also its allocator's peak). Results go to
``benchmarks/results/attention.md`` and ``attention.json`` with the load average before and after each case; with
``--profile`` the PyTorch worker also writes the top operators of one signxai call by self CPU time.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

if not __package__:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.models import ROOT

RESULTS = Path(__file__).resolve().parent / "results"
METHOD = "lrp_epsilon_0_1"
GRADIENT = {"pytorch": "torch:autograd", "tensorflow": "tf:tape_function"}
SEED = 0


# --- models ------------------------------------------------------------------------------------------------------

def torch_vit(size: int):
    import torch
    import torchvision

    torch.manual_seed(SEED)
    model = torchvision.models.vit_b_16(weights=None, image_size=size).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zero-initialises the head
    return model


def keras_vit(size: int, layers: int = 12, width: int = 768, heads: int = 12, mlp: int = 3072, classes: int = 1000):
    import keras

    class Position(keras.layers.Layer):
        def build(self, input_shape):
            self.table = self.add_weight(shape=tuple(input_shape[1:]), initializer="random_normal", name="table")

        def call(self, x):
            return x + self.table

    keras.utils.set_random_seed(SEED)
    inputs = keras.Input((size, size, 3))
    h = keras.layers.Conv2D(width, 16, strides=16, name="patch")(inputs)
    h = keras.layers.Reshape(((size // 16) ** 2, width))(h)
    # the class token as torchvision's ViT adds it: concat(token, patches) + P = pad(patches) + (P + [token; 0]), a
    # zero row (a re-indexing) and one constant (197, width) table (Keras cannot tile a token to a symbolic batch)
    h = Position(name="position")(keras.layers.ZeroPadding1D((1, 0), name="class_token")(h))
    for _ in range(layers):
        a = keras.layers.LayerNormalization(epsilon=1e-6)(h)
        a = keras.layers.MultiHeadAttention(heads, width // heads)(a, a)
        h = keras.layers.Add()([h, a])
        m = keras.layers.LayerNormalization(epsilon=1e-6)(h)
        m = keras.layers.Dense(mlp, activation="gelu")(m)
        h = keras.layers.Add()([h, keras.layers.Dense(width)(m)])
    h = keras.layers.LayerNormalization(epsilon=1e-6)(h)
    h = keras.layers.Cropping1D((0, (size // 16) ** 2), name="cls")(h)  # the class token's row
    h = keras.layers.Reshape((width,))(h)
    return keras.Model(inputs, keras.layers.Dense(classes, name="head")(h))


# --- LXT ---------------------------------------------------------------------------------------------------------

def lxt_patches():
    """LXT's ``efficient.patches`` without its package ``__init__`` (HuggingFace imports), or None."""
    import importlib.util
    import types

    spec = importlib.util.find_spec("lxt")
    if spec is None:
        return None
    if "lxt.efficient" not in sys.modules:
        package = types.ModuleType("lxt.efficient")
        package.__path__ = [f"{spec.submodule_search_locations[0]}/efficient"]
        sys.modules["lxt.efficient"] = package
    import lxt.efficient.patches as patches
    return patches


@contextlib.contextmanager
def lxt_attnlrp(patches):
    """LXT's AttnLRP on torchvision's ViT for the duration of the block (class attributes restored after it)."""
    from torch import nn

    mha = nn.MultiheadAttention
    items = [(nn.GELU, "original_forward", nn.GELU.forward), (nn.GELU, "forward", patches.non_linear_forward),
             (nn.LayerNorm, "forward", patches.layer_norm_forward), (mha, "forward",
                                                                      patches.wrap_attention_forward(mha.forward))]
    saved = [(owner, name, owner.__dict__.get(name), name in owner.__dict__) for owner, name, _ in items]
    try:
        for owner, name, value in items:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value, present in reversed(saved):
            if present:
                setattr(owner, name, value)
            else:
                delattr(owner, name)


def lxt_call(patches, model, x, targets):
    import torch

    rows, classes = torch.arange(len(x)), torch.from_numpy(np.asarray(targets))

    def call():
        with lxt_attnlrp(patches):
            xt = torch.from_numpy(x).requires_grad_(True)
            (grad,) = torch.autograd.grad(model(xt)[rows, classes].sum(), xt)
            return (xt * grad).detach().numpy()
    return call


# --- the worker --------------------------------------------------------------------------------------------------

def _load():
    return [round(v, 2) for v in os.getloadavg()]


def work(framework: str, cfg: dict) -> dict:
    from benchmarks.worker import make_call, measure, peak_mb

    if framework == "pytorch":
        import torch

        version, threads = torch.__version__, torch.get_num_threads()
        build = lambda: torch_vit(cfg["size"])  # noqa: E731
        layout = (3, cfg["size"], cfg["size"])
    else:
        import tensorflow as tf

        version, threads = tf.__version__, tf.config.threading.get_intra_op_parallelism_threads() or "default"
        build = lambda: keras_vit(cfg["size"])  # noqa: E731
        layout = (cfg["size"], cfg["size"], 3)
    patches = lxt_patches() if framework == "pytorch" else None
    records, profile = [], None
    model = build()
    for batch in cfg["batches"]:
        x = np.random.RandomState(SEED + batch).normal(0, 1, (batch, *layout)).astype(np.float32)
        logits = model(torch.from_numpy(x)).detach().numpy() if framework == "pytorch" else \
            np.asarray(model(x, training=False))
        targets = logits.argmax(1).tolist()
        gradient = make_call(framework, GRADIENT[framework], model, x, targets)
        gradient()  # warms kernels and thread pools for this shape
        calls = {GRADIENT[framework]: (lambda g=gradient: g, None),
                 f"signxai:{METHOD}": (lambda x=x, t=targets: make_call(framework, METHOD, model, x, t), gradient)}
        if patches is not None:
            calls["lxt:attnlrp"] = (lambda x=x, t=targets: lxt_call(patches, model, x, t), gradient)
        for name, (fresh, pair) in calls.items():
            record = {"framework": framework, "batch": batch, "method": name, "load_before": _load()}
            try:
                record.update(measure(fresh, cfg["warmup"] if batch == 1 else 0, cfg["repeats"], cfg["budget"],
                                      min(2, cfg["repeats"]), pair))
                record["memory"] = peak_mb(fresh(), framework)  # a steady call: the model's caches are built
            except Exception as error:  # noqa: BLE001 -- one failing case must not stop the run
                record["error"] = f"{type(error).__name__}: {str(error)[:300]}"
            record["load_after"] = _load()
            gc.collect()
            records.append(record)
            ratio = (f" ×{record['median_s'] / record['paired_median_s']:.2f}" if record.get("paired_median_s")
                     else "")
            print(f"{framework} b{batch} {name:28s} {record.get('median_s', float('nan')) * 1e3:9.1f} ms{ratio} "
                  f"{record.get('error', '')} load {record['load_before']}", file=sys.stderr, flush=True)
        if framework == "pytorch" and batch == min(cfg["batches"]) and cfg.get("profile"):
            profile = torch_profile(make_call(framework, METHOD, model, x, targets))
    return {"framework": framework, "version": version, "threads": threads, "records": records,
            "profile": profile}


def torch_profile(call, top: int = 20) -> list:
    """The operators of one (warm) signxai call by self CPU time: ``[(name, self_ms, calls)]``."""
    from torch.profiler import ProfilerActivity, profile

    call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [(e.key, e.self_cpu_time_total / 1e3, e.count) for e in rows]


# --- the report --------------------------------------------------------------------------------------------------

def report(runs: list, cfg: dict) -> str:
    lines = [f"# AttnLRP on ViT-B/16 ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
             f"`python -m benchmarks.attention {' '.join(cfg['argv'])}`; {platform.processor() or platform.machine()}"
             f", {os.cpu_count()} CPUs, {cfg['size']}×{cfg['size']}, repeats {cfg['repeats']}; medians, ratios "
             "paired call by call with the framework gradient; memory: peak growth of one steady call (MiB).", "",
             "| framework | batch | method | first call s | median s | × gradient (paired) | peak MiB | "
             "× gradient's memory | load before → after |", "|---|---|---|---|---|---|---|---|---|"]
    targets = []
    for run in runs:
        by = {(r["batch"], r["method"]): r for r in run["records"]}
        for r in run["records"]:
            base = by.get((r["batch"], GRADIENT[run["framework"]]), {})
            if "error" in r:
                lines.append(f"| {run['framework']} {run['version']} | {r['batch']} | {r['method']} | error: "
                             f"{r['error']} | | | | | |")
                continue
            ratio = r["median_s"] / r["paired_median_s"] if r.get("paired_median_s") else None
            kind = "tf_allocator" if run["framework"] == "tensorflow" else "rss"
            memory = r.get("memory", {}).get(kind)
            base_memory = base.get("memory", {}).get(kind)
            memory_ratio = memory / base_memory if memory is not None and base_memory else None
            lines.append(f"| {run['framework']} {run['version']} | {r['batch']} | {r['method']} | "
                         f"{r['first_s']:.2f} | {r['median_s']:.3f} | {'' if ratio is None else f'{ratio:.2f}'} | "
                         f"{'' if memory is None else f'{memory:.0f}'} | "
                         f"{'' if memory_ratio is None else f'{memory_ratio:.2f}'} | "
                         f"{r['load_before'][0]} → {r['load_after'][0]} |")
            if r["method"].startswith("signxai:"):
                targets.append((f"{run['framework']} b{r['batch']}: AttnLRP ≤ 1.5× gradient", ratio, 1.5))
                targets.append((f"{run['framework']} b{r['batch']}: AttnLRP memory ≤ 2× gradient's", memory_ratio,
                                2.0))
                lxt = by.get((r["batch"], "lxt:attnlrp"))
                if lxt and "error" not in lxt:
                    targets.append((f"{run['framework']} b{r['batch']}: AttnLRP faster than LXT",
                                    r["median_s"] / lxt["median_s"], 1.0))
    lines += ["", "| target | measured | |", "|---|---|---|"]
    for name, value, limit in targets:
        verdict = "n/a" if value is None else "PASS" if value <= limit else "MISS"
        lines.append(f"| {name} | {'' if value is None else f'{value:.2f}'} | {verdict} |")
    for run in runs:
        if run.get("profile"):
            lines += ["", f"Top operators of one warm signxai `{METHOD}` call ({run['framework']}, batch "
                          f"{min(cfg['batches'])}) by self CPU time:", "", "| operator | self ms | calls |",
                      "|---|---|---|"]
            lines += [f"| `{name}` | {ms:.1f} | {count} |" for name, ms, count in run["profile"]]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frameworks", default="pytorch,tensorflow")
    p.add_argument("--batch", default="1,8")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed calls after the first (batch 1 only)")
    p.add_argument("--budget", type=float, default=60.0)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--profile", action="store_true", help="PyTorch: top operators of one signxai call")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cfg = {"batches": [int(b) for b in args.batch.split(",")], "repeats": args.repeats, "warmup": args.warmup,
           "budget": args.budget, "size": args.size, "profile": args.profile,
           "argv": sys.argv[1:] if argv is None else argv}
    if args.worker:
        if args.worker == "tensorflow":
            import torch  # noqa: F401  (torch before TensorFlow: shared NOTES)
        Path(args.result).write_text(json.dumps(work(args.worker, cfg)))
        return
    runs = []
    for framework in args.frameworks.split(","):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            out = tmp.name
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(
            [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        command = [sys.executable, "-m", "benchmarks.attention", "--worker", framework, "--result", out,
                   "--batch", args.batch, "--repeats", str(args.repeats), "--warmup", str(args.warmup),
                   "--budget", str(args.budget), "--size", str(args.size)] + (["--profile"] if args.profile else [])
        if subprocess.run(command, cwd=ROOT, env=env).returncode == 0:
            runs.append(json.loads(Path(out).read_text()))
        os.unlink(out)
    args.out.mkdir(parents=True, exist_ok=True)
    text = report(runs, cfg)
    (args.out / "attention.md").write_text(text)
    (args.out / "attention.json").write_text(json.dumps({"config": cfg, "runs": runs}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
