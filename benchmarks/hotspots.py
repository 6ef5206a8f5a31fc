"""Where the time of one call goes: cProfile (Python level), and the operators the call runs — on PyTorch from
torch.profiler, on TensorFlow as a census of the ops in signxai's compiled passes (main graph and the functions it
calls, e.g. ``tf.cond`` branches), which is what the TensorFlow executor runs.

    .venv/bin/python -m benchmarks.hotspots --framework pytorch --model vgg16 --batch 1 --method lrp_epsilon_0_1
    .venv/bin/python -m benchmarks.hotspots --framework tensorflow --model resnet50 --method lrp_sequential_composite_b
    .venv/bin/python -m benchmarks.hotspots --framework pytorch --model vgg16 --method torch:autograd   # the baseline

The call is made once untimed (warm-up, graph capture, tracing), then profiled once.
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", choices=("tensorflow", "pytorch"), required=True)
    p.add_argument("--model", choices=("vgg16", "resnet50", "ecg"), required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--method", required=True)
    p.add_argument("--size", type=int, help="image side or ECG length (default 224 / 2000)")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)

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
