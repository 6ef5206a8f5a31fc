"""Where the time of one call goes: cProfile (Python level) and, on PyTorch, torch.profiler (operator level).

    .venv/bin/python -m benchmarks.hotspots --framework pytorch --model vgg16 --batch 8 --method lrp_epsilon_0_1
    .venv/bin/python -m benchmarks.hotspots --framework tensorflow --model ecg --batch 1 --method lrp_z --size 1000

The call is made once untimed (warm-up, graph capture), then profiled once.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", choices=("tensorflow", "pytorch"), required=True)
    p.add_argument("--model", choices=("vgg16", "ecg"), required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--method", required=True)
    p.add_argument("--size", type=int, help="VGG16 side or ECG length (default 224 / 2000)")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)

    from benchmarks.models import Bench
    from benchmarks.worker import _import_framework, make_call

    size = {"vgg_size": args.size} if args.model == "vgg16" and args.size else \
        {"ecg_length": args.size} if args.size else {}
    bench = Bench(args.framework, args.model, **size)
    _import_framework(args.framework)
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


if __name__ == "__main__":
    main()
