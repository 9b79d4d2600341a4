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
import json
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
from autoaug.training.subsets import device_data  # noqa: E402
from autoaug.space.policy import published_policy  # noqa: E402
from autoaug.training.fused import train_children, train_fused  # noqa: E402
from autoaug.training.config import TrainConfig  # noqa: E402
from autoaug.training.loop import train_child, train_model  # noqa: E402
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
    gpu_mib = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
    out.put((accs, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, cpu, gpu_mib))


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
               cpu=sum(r[3] for r in results) / len(accs), gpu_mem=sum(r[4] for r in results), load=load_average())
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


def markdown(args: argparse.Namespace, rows: list[dict], ops: list[list], missing: list[str], meta: dict) -> str:
    config, train_subset, val_subset = setup(args.device)
    peers = [r for r in rows if (r["workers"], r["fuse"]) == (1, 1)]
    base = statistics.mean(r["rate"] for r in peers) if peers else float("nan")
    base_cpu = statistics.mean(r["cpu"] for r in peers) if peers else float("nan")
    lines = [
        "# Children per hour: workers and fused children",
        "",
        f"Written by `experiments/bench_workers.py` (issue #11). Machine: {meta['machine']}. "
        f"Run {meta['when']}: `python experiments/bench_workers.py {' '.join(meta['argv'])}`; load average "
        f"(1, 5, 15 min) {meta['load_before']} before, {meta['load_after']} after; the machine was shared "
        "with other experiments.",
        "",
        f"Child: `{config.model}`, {config.epochs} epochs, batch {config.batch_size}, `standard` (pad-crop + flip, no "
        f"policy), on {train_subset or 'all'} train images of cifar10-reduced, scored on {val_subset or 'all'} val "
        f"images; max({args.per_worker}, K) children per worker, seeds 0, 1, ... per worker.",
        "",
        "| workers | fused K | children per hour | x peer (W=1, K=1) | CPU s per child | x peer in CPU s | val accuracy (mean +/- std) | children | peak RSS (MiB, workers summed) | load after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['fuse']} | {r['rate']:.0f} | {r['rate'] / base:.2f} | {r['cpu']:.1f} | {base_cpu / r['cpu']:.2f} | "
            f"{100 * statistics.mean(r['accs']):.2f}% +/- {100 * statistics.stdev(r['accs']):.2f} | {len(r['accs'])} | "
            f"{r['mem']:.0f}{' (GPU %.0f)' % r['gpu_mem'] if r['gpu_mem'] else ''} | {r['load']} |"
        )
    lines += [
        "",
        f"Rows in the order measured. The peer is W=1, K=1 ({', '.join('%.0f' % r['rate'] for r in peers)} children/h "
        "where measured more than once); the ratios divide by the mean of its rows. CPU s per child: the workers' "
        "own CPU time (`time.process_time`) per child; on a loaded machine it is the steadier measure of the work "
        "a child costs (wall time also counts the time other jobs held the cores).",
    ]
    if missing:
        lines += ["", f"Not measured in this run (stopped for time): {', '.join(missing)}."]
    lines += [
        "",
        "## Operator calls per training step per child",
        "",
        "torch.profiler, a 2-epoch run minus a 1-epoch run on 512 training images, divided by the steps of an "
        "epoch and by K: `aten::` calls with the nested ones, and the top-level ones (what Python dispatches).",
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
    ap.add_argument("--settings", default="1x1,1x2,1x4,1x8,2x1,2x2,2x4,2x8,1x1",
                    help="WORKERSxK settings in the order measured (the peer 1x1 first and last)")
    ap.add_argument("--fuse", default="1,2,4,8", help="K values of the operator counts")
    ap.add_argument("--ops-shared-only", action="store_true",
                    help="count operators of fused children on one shared seed only (the search's case)")
    ap.add_argument("--per-worker", type=int, default=8, help="children per worker and setting (at least K)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the fused network (GPU part)")
    ap.add_argument("--state", default="runs/bench_workers.jsonl",
                    help="every measurement as it is made; a rerun with the same file continues")
    ap.add_argument("--out", default=str(REPO / "experiments/results/bench_workers.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)  # the operator counts run here; the workers set their own
    settings = [tuple(int(x) for x in item.split("x")) for item in args.settings.split(",")]
    state = Path(args.state)
    state.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in state.read_text().splitlines()] if state.exists() else []
    meta = dict(machine=describe(args.device), when=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
                load_before=load_average(), argv=sys.argv[1:])

    def record(entry: dict) -> None:
        done.append(entry)
        with state.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def write() -> None:
        rows = [e for e in done if e["kind"] == "row"]
        ops = [e["ops"] for e in done if e["kind"] == "ops"]
        missing = [f"{w}x{k}" for w, k in settings[len(rows):]]
        text = markdown(args, rows, ops, missing, {**meta, "load_after": load_average()})
        Path(args.out).write_text(text)

    for i, (w, k) in enumerate(settings):
        if i < sum(e["kind"] == "row" for e in done):
            continue  # measured by an earlier run with this state file
        record({"kind": "row", **measure(args.device, w, k, max(args.per_worker, k), args.compile and k > 1)})
        write()
    # then the operator counts (profiled runs, slow on a loaded machine)
    for name, policy in (("standard", False), ("autoaugment-cifar10", True)):
        for k in (int(x) for x in args.fuse.split(",")):
            for shared in (False,) if k == 1 else (True,) if args.ops_shared_only else (False, True):
                if not any(e["kind"] == "ops" and e["ops"][:3] == [name, k, shared] for e in done):
                    record({"kind": "ops", "ops": [name, k, shared, list(count_ops(args.device, k, policy, shared))]})
        write()
    write()
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()
