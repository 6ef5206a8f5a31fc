"""Where the time of one call goes: cProfile (Python level), and the operators the call runs — on PyTorch from
torch.profiler, on TensorFlow as a census of the ops in signxai's compiled passes (main graph and the functions it
calls, e.g. ``tf.cond`` branches), which is what the TensorFlow executor runs.

    .venv/bin/python -m benchmarks.hotspots --framework pytorch --model vgg16 --batch 1 --method lrp_epsilon_0_1
    .venv/bin/python -m benchmarks.hotspots --framework tensorflow --model resnet50 --method lrp_sequential_composite_b
    .venv/bin/python -m benchmarks.hotspots --framework pytorch --model vgg16 --method torch:autograd   # the baseline

The call is made once untimed (warm-up, graph capture, tracing), then profiled once.

``--breakdown`` (PyTorch) splits the time of each listed method into the parts of the cost model
(docs/performance.md#cost-model) beside the framework's own gradient, as the markdown tables of
docs/performance.md#alpha-beta-profile (the columns are ms per call and ratios to the gradient's total):

    .venv/bin/python -m benchmarks.hotspots --framework pytorch --model vgg16 --breakdown \
        lrp_alpha_1_beta_0,lrp_sequential_composite_a,lrp_sequential_composite_b,lrp_epsilon_0_1
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import io
import os
import pstats

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HEAVY = ("Conv", "MatMul", "BatchMatMul", "MaxPool", "AvgPool", "FusedBatchNorm", "_Fused", "_MklFused", "_Mkl")


def _live_ops(nodes, outputs, library):
    """Op counts of the nodes that ``outputs`` depend on (what the executor runs; grappler may still merge
    duplicates), recursing into the functions that live ops call (``tf.cond`` branches, nested functions)."""
    by_name = {node.name: node for node in nodes}
    counts, stack, seen = collections.Counter(), [o.split(":")[0].lstrip("^") for o in outputs], set()
    while stack:
        name = stack.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        node = by_name[name]
        counts[node.op] += 1
        stack += [i.split(":")[0].lstrip("^") for i in node.input]
        for attr in node.attr.values():  # branch functions of If/StatelessIf, bodies of calls
            for fn in ([attr.func] if attr.HasField("func") else []) + list(attr.list.func):
                if fn.name in library:
                    f = library[fn.name]
                    counts.update(_live_ops(f.node_def, list(f.ret.values()), library))
    return counts


def tf_census(model) -> str:
    """Op counts of every compiled signxai pass of ``model`` (heavy ops first), counting only ops the outputs
    depend on (an unused filter gradient of a VJP is in the graph but never runs)."""
    from signxai.tf_signxai.backend import BACKEND

    lines = []
    for key, function in BACKEND._compiled.get(model, {}).items():
        concrete = function.get_concrete_function()
        graph_def = concrete.graph.as_graph_def()
        library = {f.signature.name: f for f in graph_def.library.function}
        counts = _live_ops(graph_def.node, [t.name for t in concrete.graph.outputs], library)
        heavy = sorted(((n, op) for op, n in counts.items() if op.startswith(HEAVY)), reverse=True)
        light = sum(counts.values()) - sum(n for n, _ in heavy)
        lines.append(f"{key[0]}: " + ", ".join(f"{op} ×{n}" for n, op in heavy) + f"; {light} other ops")
    return "\n".join(lines + ["(both branches of every tf.cond are counted; one of them runs)"])


# --- the per-part breakdown (PyTorch) ---------------------------------------------------------------------------

#: torch.profiler operator names -> the cost model's parts (the rest is elementwise work)
KERNEL_OPS = {"aten::mkldnn_convolution": "convolutions", "aten::_slow_conv2d_forward": "convolutions",
              "aten::convolution_backward": "convolution adjoints", "aten::addmm": "dense (matmul)",
              "aten::mm": "dense (matmul)", "aten::bmm": "dense (matmul)",
              "aten::max_pool2d_with_indices": "pooling", "aten::max_pool2d_with_indices_backward": "pooling"}
#: regions labelled by this script (record_function), innermost wins
REGIONS = ("verification forward", "recorded forward", "rules", "kernel maps W⁺/W⁻", "std per sample",
           "gradient: forward", "gradient: backward")


def _labelled(label, function):
    import torch.profiler

    def wrapped(*args, **kwargs):
        with torch.profiler.record_function(label):
            return function(*args, **kwargs)
    return wrapped


def _label_passes():
    """Labels the parts of a signxai PyTorch call in this process only: the gate-4 forward, the recorded forward, the
    rules' backward pass, the kernel maps and the per-sample standard deviations (the library is not changed)."""
    import signxai.core.backend as core_backend
    from signxai.torch_signxai import ops as torch_ops
    from signxai.torch_signxai.backend import BACKEND

    BACKEND.verify_capture = _labelled("verification forward", BACKEND.verify_capture)
    BACKEND.record_for_backward = _labelled("recorded forward", BACKEND.record_for_backward)
    core_backend.propagate = _labelled("rules", core_backend.propagate)
    for name, label in (("positive_kernel", "kernel maps W⁺/W⁻"), ("negative_kernel", "kernel maps W⁺/W⁻"),
                        ("std_per_sample", "std per sample")):
        setattr(torch_ops.TensorOps, name, staticmethod(_labelled(label, getattr(torch_ops.TensorOps, name))))


def _gradient_call(model, x, targets):
    """The benchmark's torch:autograd denominator with its forward and backward labelled."""
    import numpy as np
    import torch
    import torch.profiler

    model.eval()
    rows, classes = torch.arange(len(x)), torch.from_numpy(np.asarray(targets))

    def call():
        xt = torch.from_numpy(x).requires_grad_(True)
        with torch.profiler.record_function("gradient: forward"):
            y = model(xt)[rows, classes].sum()
        with torch.profiler.record_function("gradient: backward"):
            (grad,) = torch.autograd.grad(y, xt)
        return grad.numpy()
    return call


def _parts(call):
    """``{(region, part): ms}`` of one call of ``call`` under torch.profiler, and its wall time in ms."""
    import time

    import torch.profiler

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        call()
        wall = 1000 * (time.perf_counter() - start)
    events = list(prof.events())
    ranges = sorted(((e.time_range.start, e.time_range.end, e.name) for e in events if e.name in REGIONS),
                    key=lambda r: r[1] - r[0])  # innermost (shortest) first
    parts: collections.Counter = collections.Counter()
    for event in events:
        if event.name in REGIONS or event.self_cpu_time_total <= 0:
            continue
        start = event.time_range.start
        region = next((name for lo, hi, name in ranges if lo <= start <= hi), "host (outside the passes)")
        part = "all" if region in ("verification forward", "kernel maps W⁺/W⁻", "std per sample") else \
            KERNEL_OPS.get(event.name, "elementwise and other")
        parts[(region, part)] += event.self_cpu_time_total / 1000
    return parts, wall


def _paired(call, gradient, repeats):
    """Per-part medians over ``repeats`` profiled calls of ``call``, each right after a profiled gradient call (so
    that both see the same load), for both; and the median wall times."""
    import statistics

    runs = [(_parts(gradient), _parts(call)) for _ in range(repeats)]

    def medians(which):
        keys = set().union(*(run[which][0] for run in runs))
        return ({key: statistics.median(run[which][0].get(key, 0.0) for run in runs) for key in keys},
                statistics.median(run[which][1] for run in runs))
    return medians(0), medians(1)


def breakdown(model_name, batch, methods, size=None, repeats=3) -> str:
    """Markdown: per method, its time split into the cost model's parts beside the gradient's (PyTorch)."""
    from benchmarks.models import Bench
    from benchmarks.worker import _import_framework, make_call

    _import_framework("pytorch", (model_name,))
    _label_passes()
    bench = Bench("pytorch", model_name, **({"vgg_size": size} if size else {}))
    model, x = bench.model(), bench.inputs(batch)
    targets = bench.targets(model, x)
    gradient = _gradient_call(model, x, targets)
    gradient()
    lines = [f"PyTorch, {model_name} at {bench.size}×{bench.size}, batch {batch}: torch.profiler self times in ms, "
             f"medians of {repeats} profiled calls after one warm-up, each right after a profiled call of the "
             f"gradient (`torch.autograd` on the module, forward and backward); ×grad: divided by the total of the "
             f"paired gradient calls."]
    order = {name: i for i, name in enumerate(REGIONS)}
    for method in methods:
        call = make_call("pytorch", method, model, x, targets)
        call()
        (base, base_wall), (parts, wall) = _paired(call, gradient, repeats)
        base_total, total = sum(base.values()), sum(parts.values())
        grad_parts = ", ".join(f"{region.split(': ')[1]} {part} {ms:.0f}"
                               for (region, part), ms in sorted(base.items(), key=lambda kv: (kv[0][0], -kv[1]))
                               if ms >= 0.5)
        lines += ["", f"**{method}**: {total:.0f} ms profiled, **{total / base_total:.2f}× the gradient** "
                      f"({base_total:.0f} ms: {grad_parts}); wall {wall:.0f} ms against {base_wall:.0f} ms", "",
                  "| part | ms | ×grad |", "|---|---|---|"]
        for (region, part), ms in sorted(parts.items(), key=lambda kv: (order.get(kv[0][0], 99), -kv[1])):
            if ms >= 0.5:
                label = region if part == "all" else f"{region}: {part}"
                lines.append(f"| {label} | {ms:.0f} | {ms / base_total:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", choices=("tensorflow", "pytorch"), required=True)
    p.add_argument("--model", choices=("vgg16", "resnet50", "ecg"), required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--method", help="the method to profile (or give --breakdown)")
    p.add_argument("--breakdown", help="PyTorch: comma-separated methods whose time is split into the cost model's "
                                       "parts beside the gradient's (markdown)")
    p.add_argument("--repeats", type=int, default=3, help="profiled calls per method for --breakdown")
    p.add_argument("--size", type=int, help="image side or ECG length (default 224 / 2000)")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    if args.breakdown:
        if args.framework != "pytorch":
            p.error("--breakdown profiles PyTorch (TensorFlow: the op census of the compiled passes, --method)")
        print(breakdown(args.model, args.batch, args.breakdown.split(","), args.size, args.repeats))
        return
    if not args.method:
        p.error("give --method or --breakdown")

    from benchmarks.models import Bench
    from benchmarks.worker import _import_framework, make_call

    _import_framework(args.framework, (args.model,))
    size = {"vgg_size": args.size} if args.model != "ecg" and args.size else \
        {"ecg_length": args.size} if args.size else {}
    bench = Bench(args.framework, args.model, **size)
    model, x = bench.model(), bench.inputs(args.batch)
    call = make_call(args.framework, args.method, model, x, bench.targets(model, x))
    call()
    profiler = cProfile.Profile()
    profiler.enable()
    call()
    profiler.disable()
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(key).print_stats(args.top)
        print(f"==== cProfile by {key}\n" + out.getvalue().split("\n", 4)[-1])
    if args.framework == "pytorch":
        import torch.profiler

        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            call()
        print("==== torch.profiler\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    elif ":" not in args.method:
        print("==== ops in signxai's compiled passes\n" + tf_census(model))


if __name__ == "__main__":
    main()
