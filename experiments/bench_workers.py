"""Children per hour against worker processes and fused children (issue #11).

For every (workers W, fused children K) setting, W worker processes (spawned, one torch thread
each on the CPU) each train the same number of children, K at a time as one fused network
(`autoaug.training.fused.train_children`; K = 1 is `autoaug.training.loop.train_child`, what the
search runs today), on the search's default child and data subsets. Children of the worker
get seeds 0, 1, 2, ...: the same seeds at every setting, so the accuracy columns compare the
same children (fusion trains them as separate runs would, up to float rounding).

Reported per setting: children per hour (the workers' rates summed; data loading excluded),
the ratio to W = 1, K = 1 measured in the same run (the peer; measured first and last, since the
machine's load changes), validation accuracy mean +/- std over the children, and the peak
resident memory of the workers (summed). Then the operator calls per training step per child,
counted with torch.profiler (aten:: calls, nested ones included, and the top-level ones the
Python loop dispatches), separate against fused.

    python experiments/bench_workers.py                      # CPU: tiny, the default search's child
    python experiments/bench_workers.py --device cuda        # GPU: small, full splits (+ --compile)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import multiprocessing
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autoaug.search.config import SearchConfig  # noqa: E402
from autoaug.search.trials import device_data  # noqa: E402
from autoaug.space.policy import published_policy  # noqa: E402
from autoaug.training.fused import train_children, train_fused  # noqa: E402
from autoaug.training.loop import TrainConfig, train_child, train_model  # noqa: E402
from hostinfo import describe, load_average  # noqa: E402


def setup(device: str) -> tuple[TrainConfig, int | None, int | None]:
    """(child config, train subset, val subset): the default search's on the CPU, `small` on
    the full splits on a GPU."""
    if device == "cpu":
        search = SearchConfig()
        return dataclasses.replace(search.child, device="cpu"), search.train_subset, search.val_subset
    return TrainConfig.for_model("small", device=device), None, None


def worker(device: str, fuse: int, seeds: list[int], compile_: bool, out: multiprocessing.Queue) -> None:
    """Train one child per seed, `fuse` at a time; put (accuracies, seconds, peak RSS in MiB)."""
    torch.set_num_threads(1)
    config, train_subset, val_subset = setup(device)
    data = device_data("cifar10-reduced", device, train_subset, val_subset)
    accs: list[float] = []
    started, started_cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(seeds), fuse):
        group = seeds[i : i + fuse]
        if fuse == 1:
            accs.append(train_child(None, data, config, group[0]))
        else:
            accs += train_children([None] * len(group), data, config, group, compile=compile_)
    seconds, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    out.put((accs, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, cpu))


def measure(device: str, workers: int, fuse: int, per_worker: int, compile_: bool) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(device, fuse, list(range(w * per_worker, (w + 1) * per_worker)), compile_, queue))
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    accs = [a for r in results for a in r[0]]
    rate = sum(3600 * len(r[0]) / r[1] for r in results)
    row = dict(workers=workers, fuse=fuse, rate=rate, accs=accs, mem=sum(r[2] for r in results),
               cpu=sum(r[3] for r in results) / len(accs), load=load_average())
    print(f"  W={workers} K={fuse}: {rate:.0f} children/h, {row['cpu']:.1f} CPU s per child, {100 * statistics.mean(accs):.2f}%, "
          f"{row['mem']:.0f} MiB, load {row['load']}", file=sys.stderr, flush=True)
    return row


def count_ops(device: str, fuse: int, policy: bool, shared: bool) -> tuple[float, float]:
    """(aten:: calls, top-level aten:: calls) per training step per child: a 2-epoch run minus a
    1-epoch run, over the steps of one epoch and the K children (setup and evaluation cancel).
    `shared`: the K children on one seed, as a search round trains them."""
    torch.set_num_threads(1)
    config, _, val_subset = setup(device)
    # 512 training images (4 steps of 128 per epoch): the count per step does not depend on it
    data = device_data("cifar10-reduced", device, 512, val_subset)
    augment = published_policy("autoaugment-cifar10") if policy else None
    counts = []
    for epochs in (1, 2):
        cfg = dataclasses.replace(config, epochs=epochs)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            if fuse == 1:
                train_model(augment, data, cfg, 0)
            else:
                train_fused([augment] * fuse, data, cfg, [0] * fuse if shared else list(range(fuse)))
        events = [e for e in prof.events() if e.name.startswith("aten::")]
        top = [e for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
        counts.append((len(events), len(top)))
    steps = len(data.train_x) // config.batch_size
    return tuple((two - one) / steps / fuse for one, two in zip(*counts))


def markdown(args: argparse.Namespace, rows: list[dict], ops: list[tuple], peer: tuple[dict, dict], meta: dict) -> str:
    config, train_subset, val_subset = setup(args.device)
    base = statistics.mean([peer[0]["rate"], peer[1]["rate"]])
    base_cpu = statistics.mean([peer[0]["cpu"], peer[1]["cpu"]])
    lines = [
        "# Children per hour: workers and fused children",
        "",
        f"Written by `experiments/bench_workers.py` (issue #11). Machine: {meta['machine']}. "
        f"Run {meta['when']}: `python experiments/bench_workers.py {' '.join(sys.argv[1:])}`; load average "
        f"(1, 5, 15 min) {meta['load_before']} before, {meta['load_after']} after; the machine was shared "
        "with other experiments.",
        "",
        f"Child: `{config.model}`, {config.epochs} epochs, batch {config.batch_size}, `standard` (pad-crop + flip, no "
        f"policy), on {train_subset or 'all'} train images of cifar10-reduced, scored on {val_subset or 'all'} val "
        f"images; {args.per_worker} children per worker, seeds 0, 1, ... per worker.",
        "",
        "| workers | fused K | children per hour | x peer (W=1, K=1) | CPU s per child | x peer in CPU s | val accuracy (mean +/- std) | children | peak RSS (MiB, workers summed) | load after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['fuse']} | {r['rate']:.0f} | {r['rate'] / base:.2f} | {r['cpu']:.1f} | {base_cpu / r['cpu']:.2f} | "
            f"{100 * statistics.mean(r['accs']):.2f}% +/- {100 * statistics.stdev(r['accs']):.2f} | {len(r['accs'])} | "
            f"{r['mem']:.0f} | {r['load']} |"
        )
    lines += [
        "",
        f"The peer (W=1, K=1) ran first ({peer[0]['rate']:.0f} children/h) and last ({peer[1]['rate']:.0f}); "
        "the ratios divide by their mean. CPU s per child: the workers' own CPU time (`time.process_time`) per "
        "child; on a loaded machine it is the steadier measure of the work a child costs (wall time also "
        "counts the time the other jobs held the cores).",
        "",
        "## Operator calls per training step per child",
        "",
        "torch.profiler, a 2-epoch run minus a 1-epoch run, divided by the steps of an epoch and by K: "
        "`aten::` calls with the nested ones, and the top-level ones (what Python dispatches).",
        "",
        "| policy | K | seeds of the K children | aten:: calls | top-level aten:: calls | x fewer than K=1 (top-level) |",
        "|---|---|---|---|---|---|",
    ]
    for policy, fuse, shared, (total, top) in ops:
        one = next(t for p, f, _, (_, t) in ops if p == policy and f == 1)
        seeds = "-" if fuse == 1 else "one shared" if shared else "distinct"
        lines.append(f"| {policy} | {fuse} | {seeds} | {total:.0f} | {top:.0f} | {one / top:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (tiny, the default search's child) or cuda (small)")
    ap.add_argument("--workers", default="1,2", help="worker process counts, comma-separated")
    ap.add_argument("--fuse", default="1,2,4,8", help="fused children counts K, comma-separated")
    ap.add_argument("--fuse-2", default=None, help="K values for 2 and more workers (default: --fuse)")
    ap.add_argument("--per-worker", type=int, default=8, help="children per worker and setting")
    ap.add_argument("--compile", action="store_true", help="torch.compile the fused network (GPU part)")
    ap.add_argument("--out", default=str(REPO / "experiments/results/bench_workers.md"))
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    fuses = [int(k) for k in args.fuse.split(",")]
    meta = dict(machine=describe(args.device), when=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
                load_before=load_average())
    peer_first = measure(args.device, 1, 1, args.per_worker, False)
    rows = [peer_first] + [
        measure(args.device, w, k, args.per_worker, args.compile and k > 1)
        for w in workers for k in (fuses if w == 1 or not args.fuse_2 else [int(x) for x in args.fuse_2.split(",")])
        if (w, k) != (1, 1)
    ]
    peer_last = measure(args.device, 1, 1, args.per_worker, False)
    ops = [(name, k, shared, count_ops(args.device, k, policy, shared))
           for name, policy in (("standard", False), ("autoaugment-cifar10", True))
           for k in fuses for shared in ((False,) if k == 1 else (False, True))]
    meta["load_after"] = load_average()
    text = markdown(args, rows, ops, (peer_first, peer_last), meta)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
