"""Throughput of ``signxai.explain_dataset``: a plain Python loop over ``calculate_relevancemaps`` vs the local
engine (reading a .npy, writing Zarr) vs Ray Data with 2 actors, on ECG-sized samples (the Conv1D ECG net of
``benchmarks/models.py``, 2000×12, random weights); and the issue's acceptance check on 10,000 samples.

    .venv/bin/python -m benchmarks.dataset_throughput                       # 2,000 samples, 3 methods, TF
    .venv/bin/python -m benchmarks.dataset_throughput --framework pytorch --samples 500 --no-ray
    .venv/bin/python -m benchmarks.dataset_throughput --done-check           # 10,000 samples: peak RSS, SIGKILL +
                                                                            # resume, Ray: stores compared byte
                                                                            # for byte

Each engine is timed in its own fresh subprocess (model loaded from a saved file, so every run explains the same
weights). Outside the timings: imports and, for Ray, ``ray.init``; inside: for the engines, loading the model
file, the one-sample probe and the store's creation, and for Ray its actors' start-up. Not part of the tests.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a script: python benchmarks/dataset_throughput.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("gradient", "lrp_epsilon_0_1", "lrpsign_epsilon_0_25_std_x")
SUFFIX = {"tensorflow": ".keras", "pytorch": ".pt"}


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------------------- the child
def child(args) -> None:
    """One timed run in this fresh process; prints one JSON line."""
    import torch  # noqa: F401  (before TensorFlow)

    import numpy as np

    import signxai

    methods = args.methods.split(",")
    if args.mode == "loop":
        from signxai.loading import load_model
        import hashlib

        model = load_model(Path(args.model)).model
        x = np.load(args.input, mmap_mode="r")
        signxai.calculate_relevancemaps(model, np.array(x[:1]), methods[0])  # warm (graph capture)
        rss = _rss_mb()
        hashes = {}
        start = time.perf_counter()
        for i in range(0, len(x), args.batch_size):
            batch = np.array(x[i:i + args.batch_size])
            for method in methods:
                maps = signxai.calculate_relevancemaps(model, batch, method)
                hashes.setdefault(method, hashlib.blake2b(digest_size=16)).update(maps.tobytes())
        seconds = time.perf_counter() - start
        result = {"hashes": {m: h.hexdigest() for m, h in hashes.items()}}
    else:
        from signxai.loading import import_keras

        import_keras()  # the framework import (~10 s) is outside every timing, as in the loop
        if args.engine == "ray":
            import ray
            ray.init(num_cpus=max(2, args.actors), include_dashboard=False, log_to_driver=False)
        rss = _rss_mb()
        start = time.perf_counter()
        run = signxai.explain_dataset(args.model, args.input, methods, args.out, batch_size=args.batch_size,
                                      engine=args.engine, num_actors=args.actors, progress=args.progress)
        seconds = time.perf_counter() - start
        result = {"computed_chunks": run.computed_chunks, "resumed_chunks": run.resumed_chunks}
    print(json.dumps({"seconds": seconds, "rss_before_mb": rss, "peak_rss_mb": _peak_rss_mb(), **result}),
          flush=True)


def _child_command(mode, model, source, methods, batch_size, out=None, engine="local", actors=2, progress=False):
    command = [sys.executable, "-m", "benchmarks.dataset_throughput", "--child", mode, "--model", str(model),
               "--input", str(source), "--methods", ",".join(methods), "--batch-size", str(batch_size),
               "--engine", engine, "--actors", str(actors)]
    return command + (["--out", str(out)] if out else []) + (["--progress"] if progress else [])


def _run_child(*args, **kwargs) -> dict:
    done = subprocess.run(_child_command(*args, **kwargs), cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------- set-up
def prepare(folder: Path, framework: str, samples: int, length: int = 2000):
    """A saved ECG model and a .npy of ``samples`` seeded normal ECGs in its layout (written in slices)."""
    import numpy as np

    import torch  # noqa: F401

    from benchmarks.models import Bench

    bench = Bench(framework, "ecg", ecg_length=length)
    model_path = folder / f"ecg{SUFFIX[framework]}"
    if not model_path.exists():
        model = bench.model()
        if framework == "pytorch":
            torch.save(model, model_path)
        else:
            model.save(model_path)
    source = folder / f"ecg_{framework}_{samples}.npy"
    if not source.exists():
        shape = (samples, 12, length) if framework == "pytorch" else (samples, length, 12)
        data = np.lib.format.open_memmap(source, mode="w+", dtype=np.float32, shape=shape)
        rng = np.random.RandomState(0)
        for i in range(0, samples, 500):
            data[i:i + 500] = rng.normal(0, 1, (min(500, samples - i), *shape[1:]))
        data.flush()
        del data
    return model_path, source


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    files_b = sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def _store_hashes(out: Path, methods, batch_size) -> dict:
    import hashlib

    from signxai.dataset import load_results

    stored = load_results(out)
    hashes = {}
    for method in methods:
        array, digest = stored.maps[method], hashlib.blake2b(digest_size=16)
        for i in range(0, array.shape[0], batch_size):
            digest.update(array[i:i + batch_size].tobytes())
        hashes[method] = digest.hexdigest()
    return hashes


# ------------------------------------------------------------------------------------------------ throughput
def throughput(args) -> str:
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="signxai-dataset-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    model, source = prepare(folder, args.framework, args.samples)
    methods = args.methods.split(",") if args.methods else list(METHODS)
    rows = []
    loop = _run_child("loop", model, source, methods, args.batch_size)
    rows.append(("plain loop over calculate_relevancemaps (in memory, nothing stored)", loop))
    out = folder / "local.zarr"
    shutil.rmtree(out, ignore_errors=True)
    local = _run_child("run", model, source, methods, args.batch_size, out=out)
    rows.append(("explain_dataset, local engine (.npy → Zarr)", local))
    identical = {"local": _store_hashes(out, methods, args.batch_size) == loop["hashes"]}
    if not args.no_ray:
        out = folder / "ray.zarr"
        shutil.rmtree(out, ignore_errors=True)
        ray = _run_child("run", model, source, methods, args.batch_size, out=out, engine="ray", actors=2)
        rows.append(("explain_dataset, Ray Data, local cluster, 2 actors (actor start-up included)", ray))
        identical["ray"] = _store_hashes(out, methods, args.batch_size) == loop["hashes"]
    lines = [f"{args.samples} ECG samples (2000×12, {args.framework}), methods {', '.join(methods)}, batch "
             f"{args.batch_size}; load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", "",
             "| run | seconds | samples/s | ×loop | peak RSS MB |", "|---|---|---|---|---|"]
    for name, row in rows:
        lines.append(f"| {name} | {row['seconds']:.1f} | {args.samples / row['seconds']:.1f} | "
                     f"{loop['seconds'] / row['seconds']:.2f} | {row['peak_rss_mb']:.0f} |")
    lines.append("")
    lines.append("maps identical to the loop's (byte for byte): " +
                 ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in identical.items()))
    if not args.workdir:
        shutil.rmtree(folder, ignore_errors=True)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ done check
def done_check(args) -> str:
    """10,000 samples × 3 methods to Zarr: peak RSS (against a 2,000-sample run), a SIGKILL mid-run and resume,
    and Ray; every store compared byte for byte with the uninterrupted one."""
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="signxai-dataset-check-"))
    folder.mkdir(parents=True, exist_ok=True)
    methods = list(METHODS)
    model, source = prepare(folder, args.framework, args.samples)
    _, small = prepare(folder, args.framework, 2000)
    lines = [f"{args.samples} ECG samples (2000×12 float32, {source.stat().st_size / 2**20:.0f} MiB .npy, "
             f"{args.framework}), methods {', '.join(methods)}, batch {args.batch_size}", ""]

    def fresh(name):
        path = folder / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    reference = fresh("clean.zarr")
    clean = _run_child("run", model, source, methods, args.batch_size, out=reference)
    small_run = _run_child("run", model, small, methods, args.batch_size, out=fresh("small.zarr"))
    size = sum(p.stat().st_size for p in reference.rglob("*") if p.is_file()) / 2**30
    lines += [f"uninterrupted: {clean['seconds']:.0f} s ({args.samples / clean['seconds']:.1f} samples/s), peak RSS "
              f"{clean['peak_rss_mb']:.0f} MB (RSS before the run {clean['rss_before_mb']:.0f} MB); store "
              f"{size:.2f} GiB",
              f"2,000 samples, same job: peak RSS {small_run['peak_rss_mb']:.0f} MB (before "
              f"{small_run['rss_before_mb']:.0f} MB)"]

    killed = fresh("killed.zarr")
    process = subprocess.Popen(_child_command("run", model, source, methods, args.batch_size, out=killed), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    n_chunks = -(-args.samples // args.batch_size)
    target = max(1, int(n_chunks * args.kill_at))
    log = killed / "chunks" / "c"
    while process.poll() is None and (not log.is_dir() or len(os.listdir(log)) < target):
        time.sleep(0.2)
    finished_before_kill = len(os.listdir(log)) if log.is_dir() else 0
    process.send_signal(signal.SIGKILL)
    process.wait()
    from signxai.dataset import load_results

    readable = load_results(killed)
    valid = int(readable.valid[:].sum())
    resumed = _run_child("run", model, source, methods, args.batch_size, out=killed)
    lines += [f"SIGKILL after {finished_before_kill}/{n_chunks} chunks (exit {process.returncode}); the store read "
              f"back with {valid} valid samples; resume: {resumed['resumed_chunks']} chunks skipped, "
              f"{resumed['computed_chunks']} computed in {resumed['seconds']:.0f} s; identical to the "
              f"uninterrupted store, every file byte for byte: {'yes' if same_tree(killed, reference) else 'NO'}"]
    if not args.no_ray:
        ray_store = fresh("ray.zarr")
        ray = _run_child("run", model, source, methods, args.batch_size, out=ray_store, engine="ray", actors=2)
        lines.append(f"Ray Data, 2 actors: {ray['seconds']:.0f} s ({args.samples / ray['seconds']:.1f} samples/s); "
                     f"identical store, every file byte for byte: "
                     f"{'yes' if same_tree(ray_store, reference) else 'NO'}")
    lines.append(f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)")
    if not args.workdir:
        shutil.rmtree(folder, ignore_errors=True)
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--framework", choices=("tensorflow", "pytorch"), default="tensorflow")
    p.add_argument("--samples", type=int, help="samples (default 2000; --done-check 10000)")
    p.add_argument("--methods", help=f"comma-separated (default {','.join(METHODS)})")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    p.add_argument("--done-check", action="store_true", help="the 10,000-sample acceptance check")
    p.add_argument("--kill-at", type=float, default=0.4, help="--done-check: SIGKILL after this share of chunks")
    p.add_argument("--workdir", type=Path, help="keep data and stores here (default: a temporary folder, removed)")
    p.add_argument("--out", type=Path, help="also write the report to this file (markdown)")
    # internal: one timed run in a fresh process
    p.add_argument("--child", choices=("loop", "run"), dest="mode", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--engine", default="local", help=argparse.SUPPRESS)
    p.add_argument("--actors", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--progress", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.mode:
        args.methods = args.methods or ",".join(METHODS)
        child(args)
        return 0
    args.samples = args.samples or (10000 if args.done_check else 2000)
    report = done_check(args) if args.done_check else throughput(args)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
