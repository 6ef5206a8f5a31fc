"""The measuring side: runs in a subprocess of ``benchmarks.run`` and writes JSON.

``time``:   all timings of one framework in one process (the framework's own plain gradient, signxai, and on
            PyTorch Zennit and Captum).
``memory``: the peak memory of one (model, batch, method) call in a fresh process.
``rss``:    the peak resident memory of one fresh process that explains one model with a list of methods in float32
            and float64 (the process's whole footprint: framework, model, float64 copy, every call).

Heavy imports happen inside functions, so ``benchmarks.run`` can import the case lists without loading a framework.
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import json
import statistics
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")  # "required_grads has been set" etc.

GRADIENT = "gradient"
# The framework's own plain gradient, the denominator of every ratio: PyTorch autograd on the module; TensorFlow
# a GradientTape inside a tf.function (its fastest form) and, for reference, the eager tape.
FRAMEWORK_GRADIENTS = {"pytorch": ("torch:autograd",), "tensorflow": ("tf:tape_function", "tf:tape_eager")}
# The framework's own plain forward (no tape): what the verified capture (SPEC §9 gate 4, D21) adds to every
# rule-based call, so ``1 + forward/gradient`` is the floor of any rule-based method's ratio (docs/performance.md).
FRAMEWORK_FORWARDS = {"pytorch": ("torch:forward",), "tensorflow": ("tf:forward_function",)}
SINGLE_OP_LRP = ("lrp_z", "lrp_epsilon_0_1", "lrp_epsilon_0_25_std_x", "lrpsign_epsilon_0_25_std_x")
MULTI_RULE_LRP = ("lrp_alpha_1_beta_0", "lrp_sequential_composite_a", "lrp_sequential_composite_b")
LRP = SINGLE_OP_LRP + MULTI_RULE_LRP
FIFTY_SAMPLES_SIGNXAI = ("integrated_gradients", "smoothgrad")
OTHER_SIGNXAI = ("grad_cam", "guided_backprop")
SIGNXAI = (GRADIENT, *LRP, *FIFTY_SAMPLES_SIGNXAI, *OTHER_SIGNXAI)
ZENNIT = ("zennit:epsilon", "zennit:epsilon_plus_flat", "zennit:epsilon_alpha2_beta1")
CAPTUM = ("captum:lrp", "captum:integrated_gradients", "captum:smoothgrad", "captum:guided_backprop")
# 50 samples per explanation; measured at batch 1 only (a batch of 8 would be 400 gradients per call).
FIFTY_SAMPLES = FIFTY_SAMPLES_SIGNXAI + ("captum:integrated_gradients", "captum:smoothgrad")
# Measured at batch 1 only: the 50-sample methods, and what no target needs (context for the table).
BATCH1_ONLY = FIFTY_SAMPLES + ("grad_cam", "tf:tape_eager", "captum:guided_backprop")
YARDSTICK_BATCH = 50  # the framework's plain gradient of 50 samples as one batch: the yardstick of IG/SmoothGrad(50)
EPSILON = 0.1  # ε of lrp_epsilon_0_1 and of the ε layers of the composites
# Per LRP method, the same rule structure with other values of its numeric parameters (name, keyword arguments):
# after a case's timed calls, this is explained once on the same model object, and its time over the case's steady
# median is "first call of a new rule parameter value" (TensorFlow shares one compiled pass per rule structure across
# parameter values: docs/api.md#compiled-passes). lrp_z has no parameter, and α1β0 none whose other values keep its
# structure (α = 1 and β = 0 decide the code).
NEW_VALUE = {
    "lrp_epsilon_0_1": ("lrp_epsilon_0_2", {}),
    "lrp_epsilon_0_25_std_x": ("lrp_epsilon_0_1_std_x", {}),
    "lrpsign_epsilon_0_25_std_x": ("lrpsign_epsilon_0_1_std_x", {}),
    "lrp_sequential_composite_a": ("lrp_sequential_composite_a", {"epsilon": 0.2}),
    "lrp_sequential_composite_b": ("lrp_sequential_composite_b", {"epsilon": 0.2}),
}
# Methods of the peak-RSS target (one process per framework, float32 and float64).
RSS_METHODS = ("gradient", "lrp_epsilon_0_1", "smoothgrad", "vargrad", "integrated_gradients")


# TensorFlow: signxai's passes compiled (the default) and, for context, eager (``tf_signxai.backend.COMPILE_PASSES =
# False``) as ``eager:<method>`` rows.
EAGER = tuple(f"eager:{m}" for m in (GRADIENT, "lrp_epsilon_0_1", "lrp_alpha_1_beta_0", "lrp_sequential_composite_b"))


def methods_for(framework: str) -> tuple:
    return (FRAMEWORK_GRADIENTS[framework] + FRAMEWORK_FORWARDS[framework] + SIGNXAI
            + (ZENNIT + CAPTUM if framework == "pytorch" else EAGER))


def signxai_name(method: str) -> str | None:
    """The signxai method of a row (``eager:<m>`` → ``m``), None for the framework's and peers' rows."""
    if ":" not in method:
        return method
    return method.split(":", 1)[1] if method.startswith("eager:") else None


def baseline(framework: str) -> str:
    """The framework's fastest plain gradient (the only one measured at the yardstick batch)."""
    return FRAMEWORK_GRADIENTS[framework][0]


def cases(framework: str, batches: dict, only=None) -> list[dict]:
    """Every (model, batch, method) one framework measures, in order; ``only`` filters method names (the
    framework's plain gradients are always kept: they are the denominators)."""
    out = []
    keep = set(FRAMEWORK_GRADIENTS[framework]) | set(FRAMEWORK_FORWARDS[framework]) | set(
        only or methods_for(framework))
    for model, sizes in batches.items():
        for batch in sizes:
            for method in methods_for(framework):
                if (signxai_name(method) or method) in BATCH1_ONLY and batch != 1 or not (
                        method in keep or (method.startswith("eager:") and signxai_name(method) in keep)):
                    continue
                out.append({"model": model, "batch": batch, "method": method})
        if any(m in keep for m in FIFTY_SAMPLES) and 1 in sizes:
            out.append({"model": model, "batch": YARDSTICK_BATCH, "method": baseline(framework)})
    return out


# --- the calls ------------------------------------------------------------------------------------------------

def make_call(framework, method, model, x, targets, **params):
    """A zero-argument function that explains ``x`` once and returns a NumPy array (``params``: a signxai method's
    keyword parameters)."""
    if ":" not in method:
        import signxai

        return lambda: signxai.calculate_relevancemap(model, x, method, target=targets, **params)
    tool, name = method.split(":")
    if tool == "eager":
        return _eager_call(name, model, x, targets)
    if tool == "torch":
        return _torch_forward_call(model, x) if name == "forward" else _torch_gradient_call(model, x, targets)
    if tool == "tf":
        if name == "forward_function":
            return _tf_forward_call(model, x)
        return _tf_gradient_call(model, x, targets, compiled=(name == "tape_function"))
    if tool == "zennit":
        return _zennit_call(name, model, x, targets)
    return _captum_call(name, model, x, targets)


def _eager_call(method, model, x, targets):
    """A signxai call with TensorFlow's compiled passes switched off (for this call only)."""
    import signxai
    import signxai.tf_signxai.backend as tf_backend

    def call():
        previous, tf_backend.COMPILE_PASSES = tf_backend.COMPILE_PASSES, False
        try:
            return signxai.calculate_relevancemap(model, x, method, target=targets)
        finally:
            tf_backend.COMPILE_PASSES = previous
    return call


def _torch_gradient_call(model, x, targets):
    """Plain autograd on the module (eval mode), NumPy in and out like every other call."""
    import torch

    model.eval()
    rows, classes = torch.arange(len(x)), torch.from_numpy(np.asarray(targets))

    def call():
        xt = torch.from_numpy(x).requires_grad_(True)
        (grad,) = torch.autograd.grad(model(xt)[rows, classes].sum(), xt)
        return grad.numpy()
    return call


def _torch_forward_call(model, x):
    """The module's own logits (eval mode, no autograd), NumPy in and out."""
    import torch

    model.eval()

    def call():
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    return call


def _tf_forward_call(model, x):
    """``model(x, training=False)`` inside a tf.function, NumPy in and out."""
    import tensorflow as tf

    fn = tf.function(lambda xt: model(xt, training=False), reduce_retracing=True)
    return lambda: fn(tf.constant(x)).numpy()


def _tf_gradient_call(model, x, targets, compiled):
    """A GradientTape around ``model(x, training=False)``, inside a tf.function (traced on the first call) or
    eager."""
    import tensorflow as tf

    def gradient(xt, t):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            selected = tf.reduce_sum(tf.gather(model(xt, training=False), t, batch_dims=1))
        return tape.gradient(selected, xt)
    fn = tf.function(gradient, reduce_retracing=True) if compiled else gradient
    t = tf.constant(np.asarray(targets, dtype=np.int64))
    return lambda: fn(tf.constant(x), t).numpy()


def _zennit_call(name, model, x, targets):
    import torch
    from zennit import composites as zc
    from zennit.attribution import Gradient
    from zennit.rules import Epsilon
    from zennit.types import Convolution

    composite = {
        "epsilon": lambda: zc.LayerMapComposite(zc.layer_map_base() + [(Convolution, Epsilon(EPSILON)),
                                                                       (torch.nn.Linear, Epsilon(EPSILON))]),
        "epsilon_plus_flat": lambda: zc.EpsilonPlusFlat(epsilon=EPSILON),
        "epsilon_alpha2_beta1": lambda: zc.EpsilonAlpha2Beta1(epsilon=EPSILON),
    }[name]()
    model.eval()
    with torch.no_grad():
        onehot = torch.eye(model(torch.from_numpy(x[:1])).shape[-1])[torch.from_numpy(targets)]

    def call():
        with Gradient(model, composite) as attributor:  # registers and removes the rule hooks on each call
            _, relevance = attributor(torch.from_numpy(x), onehot)
        return relevance.numpy()
    return call


def _captum_call(name, model, x, targets):
    import torch
    from captum.attr import LRP, GuidedBackprop, IntegratedGradients, NoiseTunnel, Saliency
    from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS
    from captum.attr._utils.lrp_rules import EpsilonRule

    model.eval()
    target = [int(t) for t in targets]
    if name == "integrated_gradients":
        explainer = IntegratedGradients(model)
        run = lambda xt: explainer.attribute(xt, target=target, n_steps=50, internal_batch_size=50)  # noqa: E731
    elif name == "smoothgrad":
        explainer, stdev = NoiseTunnel(Saliency(model)), 0.2 * float(x.max() - x.min())
        run = lambda xt: explainer.attribute(xt, target=target, nt_type="smoothgrad", nt_samples=50,  # noqa: E731
                                             nt_samples_batch_size=50, stdevs=stdev, abs=False)
    elif name == "guided_backprop":
        explainer = GuidedBackprop(model)
        run = lambda xt: explainer.attribute(xt, target=target)  # noqa: E731
    else:
        explainer = LRP(model)
        known = tuple(SUPPORTED_LAYERS_WITH_RULES) + tuple(SUPPORTED_NON_LINEAR_LAYERS)

        def run(xt):
            # Captum has no default rule for Flatten, Conv1d or AdaptiveAvgPool1d and deletes every rule after
            # each call: ε (which is the identity on Flatten) is set on those before each call.
            for module in model.modules():
                if not list(module.children()) and type(module) not in known:
                    module.rule = EpsilonRule()
            return explainer.attribute(xt, target=target)
    return lambda: run(torch.from_numpy(x).clone()).detach().numpy()


# --- re-trace counter -----------------------------------------------------------------------------------------

TRACES = [0]


def _counting(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        TRACES[0] += 1
        return fn(*args, **kwargs)
    return wrapper


def install_trace_counters(framework):
    """Counts graph captures and traces: signxai's graph capture, torch.fx traces, tf.function traces."""
    if framework == "pytorch":
        import torch.fx

        import signxai.torch_signxai.backend as backend
        torch.fx.Tracer.trace = _counting(torch.fx.Tracer.trace)
    else:
        from tensorflow.python.eager.polymorphic_function import tracing_compilation

        import signxai.tf_signxai.backend as backend
        tracing_compilation._create_concrete_function = _counting(tracing_compilation._create_concrete_function)
    capture = getattr(backend, "_Capture", None)
    if capture is not None:
        capture.__init__ = _counting(capture.__init__)


# --- time ------------------------------------------------------------------------------------------------------

def _import_framework(framework, models=("resnet50",)):
    """The framework's version string. A TensorFlow process imports torch (first: see shared NOTES) only where a
    model needs it (the ResNet-50 twin is converted from torchvision's), so its memory is TensorFlow's alone."""
    if framework == "pytorch" or "resnet50" in models:
        import torch

        if framework == "pytorch":
            return torch.__version__
    import tensorflow as tf

    return tf.__version__


def _load():
    import os

    return round(os.getloadavg()[0], 2)


def time_framework(framework: str, cfg: dict) -> dict:
    from benchmarks.models import Bench

    version = _import_framework(framework, tuple(cfg["batches"]))
    benches = {m: Bench(framework, m, cfg["vgg_size"], cfg["ecg_length"]) for m in cfg["batches"]}
    install_trace_counters(framework)
    records, targets, pairs = [], {}, {}

    def prepare(bench, batch):
        """Targets and the framework-gradient pair of one input shape; its calls warm the process (kernels,
        thread pools, signxai's imports) before any case of that shape."""
        key = (bench.name, batch)
        if key not in targets:
            x, scratch = bench.inputs(batch), bench.model()
            targets[key] = bench.targets(scratch, x)
            pairs[key] = make_call(framework, baseline(framework), scratch, x, targets[key])
            pairs[key]()
            make_call(framework, GRADIENT, scratch, x, targets[key])()
        return key

    for case in cases(framework, cfg["batches"], cfg.get("only")):
        bench, batch, method = benches[case["model"]], case["batch"], case["method"]
        x, key = bench.inputs(batch), prepare(bench, batch)
        # Every timed call is paired with a call of the framework's fastest gradient right before it (for the
        # 50-sample methods: of 50 samples), so each ratio compares calls made under the same load.
        pair = None if method in FRAMEWORK_GRADIENTS[framework] else \
            pairs[prepare(bench, YARDSTICK_BATCH)] if (signxai_name(method) or method) in FIFTY_SAMPLES else \
            pairs[key]
        record = dict(case, framework=framework, load_before=_load())
        other = NEW_VALUE.get(method)
        try:
            model = bench.model()  # a fresh model object (no cache has seen it); the new parameter value reuses it
            new_value = None if other is None else functools.partial(make_call, framework, other[0], model, x,
                                                                     targets[key], **other[1])
            record.update(measure(functools.partial(make_call, framework, method, model, x, targets[key]),
                                  cfg["warmup"], cfg["repeats"], cfg["budget"], cfg["min_repeats"], pair, new_value))
        except Exception as error:  # one failing method must not stop the run
            record["error"] = f"{type(error).__name__}: {str(error)[:300]}"
        record["load_after"] = _load()
        model = new_value = None
        gc.collect()
        records.append(record)
        _progress(record)
    return {"framework": framework, "version": version, "threads": _threads(framework), "records": records}


def measure(fresh_call, warmup: int, repeats: int, budget: float, min_repeats: int = 2, pair=None,
            new_value=None) -> dict:
    """The first call on a fresh model, ``warmup`` untimed calls, then up to ``repeats`` timed calls, each right
    after a timed call of ``pair`` (the framework gradient the ratio divides by) if given; then, if given, one call
    of ``new_value()`` (the same method with other rule parameter values on the same model object):
    ``new_value_first_s``, with the traces it made.

    Long cases are cut short: no warm-up call when the first call took more than ``budget``/2 seconds (it has
    warmed everything already), and no further timed call once ``budget`` seconds have passed since the first call
    began and ``min_repeats`` timed calls (or ``repeats``, if fewer) exist. ``identical``: every call returned the
    same array, bit for bit (docs/api.md#model-requirements), the first call included.
    """
    traces = TRACES[0]
    call = fresh_call()
    start = time.perf_counter()
    reference = call()
    first = time.perf_counter() - start
    first_traces, identical = TRACES[0] - traces, True
    for _ in range(warmup if first <= budget / 2 else 0):
        identical &= bool(np.array_equal(call(), reference))
    traces, times, paired = TRACES[0], [], []
    while len(times) < repeats and not (len(times) >= min(min_repeats, repeats)
                                        and time.perf_counter() - start > budget):
        if pair is not None:
            begun = time.perf_counter()
            pair()
            paired.append(time.perf_counter() - begun)
        begun = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - begun)
        identical &= bool(np.array_equal(result, reference))
    out = {"first_s": first, "median_s": statistics.median(times), "times_s": times, "first_traces": first_traces,
           "retraces": TRACES[0] - traces, "identical": identical}
    if new_value is not None:
        other, traces = new_value(), TRACES[0]
        begun = time.perf_counter()
        other()
        out.update(new_value_first_s=time.perf_counter() - begun, new_value_traces=TRACES[0] - traces)
    if paired:
        out.update(paired_s=paired, paired_median_s=statistics.median(paired))
    return out


def _threads(framework):
    if framework == "pytorch":
        import torch

        return torch.get_num_threads()
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads() or "default"


def _progress(record):
    head = f"{record['framework']:10s} {record['model']:8s} b{record['batch']:<3d} {record['method']:32s}"
    if "error" in record:
        print(f"{head} ERROR {record['error']}", file=sys.stderr, flush=True)
    else:
        pair = "" if "paired_median_s" not in record else (
            f" (paired fw grad {record['paired_median_s'] * 1e3:.1f} ms: "
            f"×{record['median_s'] / record['paired_median_s']:.2f})")
        other = "" if "new_value_first_s" not in record else (
            f"  new parameter value first {record['new_value_first_s'] * 1e3:.1f} ms "
            f"({record['new_value_traces']} traces)")
        print(f"{head} first {record['first_s'] * 1e3:9.1f} ms  median {record['median_s'] * 1e3:9.1f} ms"
              f"{pair}{other}  "
              f"n={len(record['times_s'])} retraces={record['retraces']} identical={record['identical']} "
              f"load {record['load_before']}", file=sys.stderr, flush=True)


# --- memory ----------------------------------------------------------------------------------------------------

def _status_kb(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def peak_mb(call, framework) -> dict:
    """Peak memory growth (MiB) during one call.

    ``rss``: freed heap handed back to the OS first (``malloc_trim``), the RSS high-water mark reset, then
    ``VmHWM`` after the call minus ``VmRSS`` before: every allocator counts. ``tf_allocator`` (TensorFlow only): the
    peak of TensorFlow's CPU allocator minus its use before the call. With oneDNN (TF's default on x86) that
    allocator is a pool that keeps freed memory resident, so after the first call RSS no longer shows TensorFlow's
    peak; its own statistics do.
    """
    _trim()
    if framework == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    reset = _reset_peak()
    base = _status_kb("VmRSS") if reset else _status_kb("VmHWM")
    call()
    out = {"rss": (_status_kb("VmHWM") - base) / 1024, "hwm_reset": reset}
    if framework == "tensorflow":
        out["tf_allocator"] = (tf.config.experimental.get_memory_info("CPU:0")["peak"] - before) / 2**20
    return out


def memory_case(framework: str, cfg: dict, case: dict) -> dict:
    from benchmarks.models import Bench

    _import_framework(framework, (case["model"],))
    bench = Bench(framework, case["model"], cfg["vgg_size"], cfg["ecg_length"])
    model, x = bench.model(), bench.inputs(case["batch"])
    call = make_call(framework, case["method"], model, x, bench.targets(model, x))
    first, steady = peak_mb(call, framework), peak_mb(call, framework)
    kind = "tf_allocator" if framework == "tensorflow" else "rss"
    return dict(case, framework=framework, peak_mb=steady[kind], first_peak_mb=first[kind], measure=kind,
                first=first, steady=steady, rss_mb=_status_kb("VmRSS") / 1024)


def rss_case(framework: str, cfg: dict, case: dict) -> dict:
    """One process explains ``case['model']`` at ``case['batch']`` with every method of ``case['methods']`` in
    float32, then in float64; the result is the process's peak RSS (VmHWM, never reset) and the RSS after each call.
    Nothing is released between calls except what the library releases itself."""
    import signxai
    from benchmarks.models import Bench

    _import_framework(framework, (case["model"],))
    bench = Bench(framework, case["model"], cfg["vgg_size"], cfg["ecg_length"])
    model, x = bench.model(), bench.inputs(case["batch"])
    del bench  # the benchmark's own copy of the random weights (and its cached inputs): a caller holds only the model
    _trim()
    steps = [{"step": "model built", "rss_mb": _status_kb("VmRSS") / 1024, "hwm_mb": _status_kb("VmHWM") / 1024}]
    for dtype in ("float32", "float64"):
        for method in case["methods"]:
            begun = time.perf_counter()
            signxai.calculate_relevancemap(model, x, method, dtype=dtype)
            steps.append({"step": f"{method} {dtype}", "seconds": time.perf_counter() - begun,
                          "rss_mb": _status_kb("VmRSS") / 1024, "hwm_mb": _status_kb("VmHWM") / 1024})
            print(f"rss {framework:10s} {steps[-1]['step']:36s} {steps[-1]['seconds']:7.1f} s  "
                  f"RSS {steps[-1]['rss_mb']:7.0f} MiB  peak {steps[-1]['hwm_mb']:7.0f} MiB", file=sys.stderr,
                  flush=True)
    del model
    _trim()
    steps.append({"step": "model released", "rss_mb": _status_kb("VmRSS") / 1024,
                  "hwm_mb": _status_kb("VmHWM") / 1024})
    return dict(case, framework=framework, peak_mb=_status_kb("VmHWM") / 1024, steps=steps)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("time", "memory", "rss"))
    parser.add_argument("--framework", required=True, choices=("tensorflow", "pytorch"))
    parser.add_argument("--config", required=True, help="JSON: batches, vgg_size, ecg_length, repeats, ...")
    parser.add_argument("--case", help="JSON {model, batch, method} (memory) or {model, batch, methods} (rss)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    cfg = json.loads(args.config)
    cfg["batches"] = {k: tuple(v) for k, v in cfg["batches"].items()}
    if args.mode == "time":
        result = time_framework(args.framework, cfg)
    elif args.mode == "memory":
        result = memory_case(args.framework, cfg, json.loads(args.case))
    else:
        result = rss_case(args.framework, cfg, json.loads(args.case))
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
