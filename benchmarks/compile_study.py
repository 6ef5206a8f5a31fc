"""torch.compile study of issue 22 (docs/performance.md#torch-compile): what compiling signxai's PyTorch passes with
``torch.compile`` costs on the first call and gains in the steady state, next to eager signxai and a compiled plain
autograd gradient.

    .venv/bin/python -m benchmarks.compile_study                       # VGG16 twin at 224×224, batches 1 and 8
    .venv/bin/python -m benchmarks.compile_study --size 64 --batch 1 --methods lrp_epsilon_0_1,guided_backprop
    .venv/bin/python -m benchmarks.compile_study --models vgg16,resnet50 --backend aot_eager   # no C++ compiler

Per case (model, batch) and method, three variants:

* ``eager``: ``signxai.calculate_relevancemap`` as shipped (the passes run eagerly);
* ``compiled``: the same call with the body of the pass (``make_body(ref)`` in ``signxai/core/backend.py``: the
  gradient pass, or the graph engine over the captured nodes) wrapped in ``torch.compile(body, dynamic=False,
  backend=…, mode=…)`` (Dynamo's cache reuses the graph compiled on the first call). The gate-4 forward (the model's
  own logits, SPEC §9) stays eager. The library is not changed; inside this process only (:class:`CompiledPasses`),
  ``TorchBackend.pass_function`` is replaced, explicit targets enter the pass as a class tensor (the library resolves
  them on the host: a break mid-pass), the graph cache (a lock) is read outside the graph, ``Capture.substitute`` runs
  without ``torch.fx`` (``Node.args`` is on Dynamo's skip list: a break at every node), and
  ``torch._dynamo.config.trace_autograd_ops`` is set (``--dynamo``) so that the VJPs of pooling and flatten layers are
  traced;
* ``torch:compiled_grad`` (gradient row only): ``torch.autograd.grad`` through ``torch.compile(model)``, the
  like-for-like compiled baseline.

Every variant's first call is made on a fresh model after ``torch._dynamo.reset()`` with Inductor's on-disk caches
off (FX graph cache, AOT autograd cache), so it includes the whole compilation a first use pays. Process one-offs
(imports, Inductor's first C++ build) are paid before by a scratch compile. Steady calls are **paired**: each timed
call is preceded by a call of the eager autograd gradient (``benchmarks.worker._torch_gradient_call``) and ratios
are medians over medians of the same run. Maps are compared bit for bit with the eager signxai map (the eager
autograd gradient for ``torch:compiled_grad``); ``maxrel`` is ``max|a − b| / max|b|``. Graph breaks come from
``torch._dynamo.explain`` of the same body on the same arguments (after the timings).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
import weakref
from pathlib import Path

import numpy as np

from benchmarks.models import Bench

METHODS = ("gradient", "lrp_epsilon_0_1", "lrp_z", "lrp_alpha_1_beta_0", "guided_backprop")
COMPILED_PASSES = ("gradients", "graph_backward")  # the "logits" pass (gate 4: the model itself) stays eager


def _load():
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


class CompiledPasses:
    """While active (in this process only), ``TorchBackend.pass_function`` wraps each pass body in
    ``torch.compile``, and remembers the last body and arguments of every pass for ``torch._dynamo.explain``.

    As in the library, the body is made anew on every call; Dynamo's cache (per code object, guarded) reuses the
    graph compiled on the first call (the ``re-compiles`` column counts the frames compiled during steady calls).
    Works with both forms of the backend's target selection: ``choose(logits, requested) -> classes`` and
    ``select(outputs, requested) -> (coefficients, classes)`` (with ``bind_body`` and fixed inputs)."""

    def __init__(self, backend: str, mode: str | None):
        self.backend, self.mode = backend, mode
        self.last: dict = {}

    def __enter__(self):
        import torch
        import torch.nn.functional as F
        from signxai.torch_signxai.backend import TorchBackend
        from signxai.torch_signxai.capture import Capture

        owner = self
        pick_name = "select" if hasattr(TorchBackend, "select") else "choose"
        self._original = (TorchBackend.pass_function, getattr(TorchBackend, pick_name), TorchBackend.graph_for,
                          Capture.substitute)
        original_pass, original_pick, graph_for, _ = self._original

        def pass_function(backend, model, x, name, key, make_body, takes_targets=True, **kwargs):
            key = key() if callable(key) else key
            if key is None or name not in COMPILED_PASSES:
                return original_pass(backend, model, x, name, key, make_body, takes_targets, **kwargs)
            bind = getattr(backend, "bind_body", None)
            body = (bind(model, make_body) if bind is not None else make_body)(weakref.ref(model))
            function = torch.compile(body, backend=owner.backend, mode=owner.mode, dynamic=False)

            def call(*args):
                if takes_targets:
                    args = (*args[:-1], _classes(args[0], args[-1]))
                owner.last[name] = (body, args)
                return function(*args)
            return call

        # the library resolves the targets on the host from the pass's own outputs (NumPy), which breaks the graph
        # in the middle of the pass; explicit targets are passed in as a class tensor instead (see _classes)
        host_pick = torch._dynamo.disable(original_pick)

        def pick(backend, outputs, requested):
            if not isinstance(requested, torch.Tensor):
                return host_pick(backend, outputs, requested)
            if pick_name == "choose":
                return requested
            return F.one_hot(requested, outputs.shape[-1]).to(outputs.dtype), requested

        TorchBackend.pass_function = pass_function
        setattr(TorchBackend, pick_name, pick)
        self._pick_name = pick_name
        # the per-model graph cache (a lock and weak dictionaries): looked up outside the graph
        TorchBackend.graph_for = torch._dynamo.disable(graph_for)
        Capture.substitute = _substitute
        return self

    def __exit__(self, *exc):
        from signxai.torch_signxai.backend import TorchBackend
        from signxai.torch_signxai.capture import Capture

        (TorchBackend.pass_function, pick, TorchBackend.graph_for, Capture.substitute) = self._original
        setattr(TorchBackend, self._pick_name, pick)


def _map_arg(a, fn):
    """``torch.fx.node.map_arg`` in plain Python over ``Node._args``: Dynamo skips ``torch.fx`` (``Node.args`` is
    on its skip list), so the captured nodes' forwards, which substitute their inputs into the recorded call, break
    the graph at every node."""
    import torch.fx as fx

    if isinstance(a, fx.Node):
        return fn(a)
    if isinstance(a, tuple) and not hasattr(a, "_fields"):
        return tuple(_map_arg(v, fn) for v in a)
    if isinstance(a, list):
        return [_map_arg(v, fn) for v in a]
    if isinstance(a, dict):
        return {k: _map_arg(v, fn) for k, v in a.items()}
    if isinstance(a, slice):
        return slice(_map_arg(a.start, fn), _map_arg(a.stop, fn), _map_arg(a.step, fn))
    return a


def _substitute(self, node, parents, values):
    """``Capture.substitute`` without ``torch.fx`` calls (same result)."""
    def value_of(a):
        for parent, value in zip(parents, values):
            if parent is a:
                return value
        return self.constants[a]
    return _map_arg(node._args, value_of), _map_arg(node._kwargs, value_of)


def _classes(x, requested):
    """Explicit targets (what this study passes) as an int64 class tensor for the compiled pass; the argmax target
    stays a :class:`Targets`, resolved on the host (a graph break). Unlike the library's ``choose``, the classes are
    not validated against the logits' width here, and only (N, K) outputs are supported."""
    import torch

    if requested.values is not None or requested.is_argmax:
        values = requested.values
    else:
        target = np.asarray(requested.target)
        if target.dtype.kind not in "iu":  # other kinds of target: resolved on the host
            return requested
        values = np.broadcast_to(target.astype(np.int64).reshape(-1), (len(x),))
    if values is None:
        return requested
    return torch.as_tensor(np.array(values, dtype=np.int64), device=x.device)


def _frames_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(sum(counters["frames"].values()))


def _graph_breaks(function, *args) -> dict:
    import torch

    torch._dynamo.reset()
    try:
        out = torch._dynamo.explain(function)(*args)
    except Exception as error:  # noqa: BLE001 - reported, not hidden
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    finally:
        torch._dynamo.reset()
    reasons = []
    for reason in out.break_reasons:
        text = str(getattr(reason, "reason", reason)).splitlines()[0][:120]
        if text not in reasons:
            reasons.append(text)
    return {"graphs": out.graph_count, "breaks": out.graph_break_count, "ops": out.op_count, "reasons": reasons}


def _compare(a: np.ndarray, b: np.ndarray) -> tuple:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = float(np.max(np.abs(b))) or 1.0
    return bool(np.array_equal(a, b)), float(np.max(np.abs(a - b)) / scale)


def _timed(call):
    start = time.perf_counter()
    out = call()
    return time.perf_counter() - start, out


def measure(make_call, gradient, repeats: int) -> dict:
    """First call (of a fresh call object), one warm-up, then ``repeats`` calls each preceded by the gradient."""
    call = make_call()  # built outside the timing
    first, out = _timed(call)
    outputs = [out]
    outputs.append(call())  # warm-up
    before = _frames_compiled()
    times, grads = [], []
    for _ in range(repeats):
        grads.append(_timed(gradient)[0])
        elapsed, out = _timed(call)
        times.append(elapsed)
        outputs.append(out)
    same = all(np.array_equal(outputs[0], o) for o in outputs[1:])
    steady, grad = statistics.median(times), statistics.median(grads)
    return {"first_s": first, "steady_s": steady, "grad_s": grad, "ratio": steady / grad, "first_ratio": first / steady,
            "repeat_same": same, "recompiled": _frames_compiled() - before, "times": times, "grads": grads,
            "map": outputs[0]}


class _Maker:
    """``make_call()`` builds a fresh call (fresh model, reset compiler state); ``last`` is that call."""

    def __init__(self, build):
        self.build, self.last = build, None

    def __call__(self):
        self.last = self.build()
        return self.last


def run_case(bench: Bench, batch: int, methods, variants, backend: str, mode, repeats: int, explain: bool) -> list:
    import torch

    import signxai
    from benchmarks.worker import _torch_gradient_call

    reference = bench.model()
    x = bench.inputs(batch)
    targets = bench.targets(reference, x)
    gradient = _torch_gradient_call(reference, x, targets)
    gradient()
    eager_grad = gradient()
    rows = []

    def signxai_call(method, compiled):
        def build():
            torch._dynamo.reset()
            model = bench.model()
            if not compiled:
                return lambda: signxai.calculate_relevancemap(model, x, method, target=targets)
            passes = CompiledPasses(backend, mode)

            def call():
                with passes:
                    return signxai.calculate_relevancemap(model, x, method, target=targets)
            call.passes = passes  # type: ignore[attr-defined]
            call.model = model  # type: ignore[attr-defined]
            return call
        return _Maker(build)

    def compiled_grad():
        def build():
            torch._dynamo.reset()
            model = torch.compile(bench.model().eval(), backend=backend, mode=mode, dynamic=False)
            call = _torch_gradient_call(model, x, targets)
            call.module = model  # type: ignore[attr-defined]
            return call
        return _Maker(build)

    for method in methods:
        eager_map = None
        for variant in variants:
            if variant == "torch:compiled_grad" and method != "gradient":
                continue
            load_before = _load()
            maker = (compiled_grad() if variant == "torch:compiled_grad"
                     else signxai_call(method, compiled=variant == "compiled"))
            try:
                result = measure(maker, gradient, repeats)
            except Exception as error:  # noqa: BLE001 - reported in the table
                row = {"method": method, "variant": variant, "batch": batch,
                       "error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
                print(json.dumps(row), flush=True)
                rows.append(row)
                continue
            out = result.pop("map")
            if variant == "eager":
                eager_map = out
            against = eager_grad if variant == "torch:compiled_grad" else eager_map
            identical, maxrel = _compare(out, against) if against is not None else (None, None)
            row = {"method": method, "variant": variant, "batch": batch, **result, "identical": identical,
                   "maxrel": maxrel, "load": f"{load_before} / {_load()}"}
            if explain and variant == "compiled":
                passes = maker.last.passes
                name = "gradients" if method == "gradient" else "graph_backward"
                if name in passes.last:
                    body, args = passes.last[name]
                    with passes:
                        row["explain"] = _graph_breaks(body, *args)
            if explain and variant == "torch:compiled_grad":
                module = bench.model().eval()
                xt = torch.from_numpy(x).requires_grad_(True)
                row["explain"] = _graph_breaks(module, xt)
            print(json.dumps({k: v for k, v in row.items() if k not in ("times", "grads")}), flush=True)
            rows.append(row)
            gc.collect()
    torch._dynamo.reset()
    return rows


def _fmt_ms(seconds):
    return f"{1000 * seconds:,.0f} ms"


def table(rows: list, header: str) -> str:
    lines = [header, "",
             "| model | batch | method | variant | first call | steady | grad (paired) | × grad | first/steady "
             "| repeats same | same as eager | max rel. diff | graph breaks | re-compiles |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['batch']} | {r['method']} | {r['variant']} | error: {r['error']} "
                         "| | | | | | | | | |")
            continue
        ex = r.get("explain")
        breaks = "" if ex is None else (ex.get("error") or f"{ex['breaks']} ({ex['graphs']} graphs)")
        same = "" if r["identical"] is None else ("yes" if r["identical"] else "no")
        maxrel = "" if r["maxrel"] is None else f"{r['maxrel']:.1e}"
        lines.append(f"| {r['model']} | {r['batch']} | {r['method']} | {r['variant']} | {_fmt_ms(r['first_s'])} "
                     f"| {_fmt_ms(r['steady_s'])} | {_fmt_ms(r['grad_s'])} | {r['ratio']:.2f} | "
                     f"{r['first_ratio']:.1f} | {'yes' if r['repeat_same'] else 'NO'} | {same} | {maxrel} | {breaks} "
                     f"| {r['recompiled']} |")
    reasons = {}
    for r in rows:
        for reason in (r.get("explain") or {}).get("reasons", []):
            reasons.setdefault(reason, set()).add(r["method"])
    if reasons:
        lines += ["", "Graph-break reasons (dynamo):", ""]
        lines += [f"* {reason} ({', '.join(sorted(methods))})" for reason, methods in reasons.items()]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vgg16", help="comma list of vgg16, resnet50")
    parser.add_argument("--size", type=int, default=224, help="image side (default 224)")
    parser.add_argument("--batch", default="1,8", help="comma list of batch sizes")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--variants", default="eager,compiled,torch:compiled_grad")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (inductor, aot_eager, eager)")
    parser.add_argument("--mode", default=None, help="torch.compile mode (e.g. max-autotune-no-cudagraphs)")
    parser.add_argument("--dynamo", default="trace_autograd_ops",
                        help="torch._dynamo.config flags set to True (comma list; 'none' for the defaults): "
                             "trace_autograd_ops traces the VJPs (torch.autograd.grad) instead of breaking the graph")
    parser.add_argument("--recompile-limit", type=int, default=64,
                        help="torch._dynamo.config.recompile_limit (default 8: a per-node frame exceeds it)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-explain", action="store_true", help="skip the graph-break analysis")
    parser.add_argument("--out", default=None, help="write the table (markdown) and raw rows (json) here")
    args = parser.parse_args(argv)

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="signxai-inductor-"))
    import torch
    import torch._functorch.config
    import torch._inductor.config

    torch._inductor.config.fx_graph_cache = False  # every first call compiles, as on a first use
    torch._functorch.config.enable_autograd_cache = False
    for flag in [f for f in args.dynamo.split(",") if f and f != "none"]:
        setattr(torch._dynamo.config, flag, True)
    torch._dynamo.config.recompile_limit = args.recompile_limit

    # process one-offs (Inductor's first C++ build, imports) outside every timing
    if args.backend == "inductor":
        torch.compile(lambda t: (t * 2).relu().sum(), dynamic=False)(torch.ones(3))
    torch._dynamo.reset()

    rows = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = _load()
    for name in args.models.split(","):
        bench = Bench("pytorch", name, vgg_size=args.size)
        for batch in map(int, args.batch.split(",")):
            for row in run_case(bench, batch, args.methods.split(","), args.variants.split(","), args.backend,
                                args.mode, args.repeats, not args.no_explain):
                rows.append({"model": name, **row})
    header = (f"torch.compile study, {started}: PyTorch {torch.__version__}, backend {args.backend}, mode "
              f"{args.mode or 'default'}, dynamo flags {args.dynamo}, recompile limit {args.recompile_limit}, "
              f"{args.size}×{args.size}, {args.repeats} paired repeats, "
              f"{torch.get_num_threads()} threads; load average {load_start} at the start, {_load()} at the end")
    text = table(rows, header)
    print(text)
    if args.out:
        out = Path(args.out)
        out.with_suffix(".md").write_text(text + "\n")
        out.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
