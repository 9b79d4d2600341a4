"""Children in the final regime and in proxy settings, trained two at a time and cached.

Shared by `proxy_rank.py` and `search_quality.py` (issue #10). A `Job` is one child: a policy
spec (`autoaug.space.specs.resolve`: a baseline, a named policy or a policy file), a training
recipe, the train / val subsets, a seed, and the split it is scored on. `run_jobs` trains the
jobs not yet in its cache on `parallel` processes with one torch thread each and appends every
finished child to the cache (JSON lines) at once, so a killed run loses only the children in
flight and the next run resumes.

The final regime is `autoaug train --model tiny --epochs 80` (REFERENCE.md, issue #10): the
`tiny` recipe for 80 epochs on the 4,000 reduced CIFAR-10 train images, the spec's pad-crop +
flip and Cutout (16 after every policy), scored on the 10,000 test images. A job runs what that
command runs for one seed (`train_model` with the same config, data and seed), in-process.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoaug.space.specs import resolve
from autoaug.training.config import TrainConfig
from autoaug.training.loop import evaluate, train_model
from autoaug.training.subsets import device_data

DATASET = "cifar10-reduced"
FINAL_EPOCHS = 80


@dataclass(frozen=True)
class Job:
    spec: str
    """A policy spec: baseline name, named policy, randaugment:N=..,M=.. or a policy file."""
    recipe: dict[str, Any]
    """TrainConfig fields: "model" (default tiny) picks the network's recipe, the others
    (epochs, ...) apply on top; standard / cutout come from the spec."""
    seed: int
    train_subset: int | None = None
    val_subset: int | None = None
    score: str = "test"
    """'test' (the 10,000 test images) or 'val' (the val subset)."""
    policy_cutout: bool = True
    """False: a policy trains without the Cutout that every policy gets in the final regime
    (the search's child before issue #10)."""
    device: str = "cpu"
    """Where it trains (not part of the key: one cache per device kind)."""

    @property
    def key(self) -> str:
        """Names the child by what it trains: a policy file by its content, not its path."""
        spec = self.spec
        if spec.endswith(".json") and Path(spec).is_file():
            spec = "sha1:" + hashlib.sha1(Path(spec).read_bytes()).hexdigest()[:12]
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "device"} | {"spec": spec}
        return json.dumps(fields, sort_keys=True)


def final_job(spec: str, seed: int) -> Job:
    """`autoaug train --policy SPEC --model tiny --epochs 80 --seed SEED`, scored on test."""
    return Job(spec, {"epochs": FINAL_EPOCHS}, seed)


def _init_worker() -> None:
    torch.set_num_threads(1)


def train_job(job: Job) -> dict[str, Any]:
    """Train one child; returns its accuracy in [0, 1] and the CPU seconds it took."""
    started = time.process_time()
    wall = time.perf_counter()
    resolved = resolve(job.spec)
    cutout = resolved.cutout if (resolved.augmenter is None or job.policy_cutout) else 0
    recipe = dict(job.recipe)
    config = TrainConfig.for_model(recipe.pop("model", "tiny"), standard=resolved.standard,
                                   cutout=cutout, device=job.device, **recipe)
    data = device_data(DATASET, job.device, job.train_subset, job.val_subset)
    model, _ = train_model(resolved.augmenter, data, config, job.seed)
    x, y = (data.test_x, data.test_y) if job.score == "test" else (data.val_x, data.val_y)
    with torch.no_grad():
        acc = evaluate(model, x, y, mean=data.mean, std=data.std, batch_size=config.eval_batch_size)
    return {"acc": acc, "cpu_s": time.process_time() - started, "wall_s": time.perf_counter() - wall}


def load_cache(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["key"]] = row
    return done


def run_jobs(
    jobs: Sequence[Any], cache: Path, parallel: int = 2, log: Callable[[str], None] = print,
    train: Callable[[Any], dict[str, Any]] = train_job,
) -> dict[str, dict[str, Any]]:
    """Train the jobs missing from `cache`; returns {job.key: row} for all of `jobs`.

    A job is a `Job` trained by `train_job`, or anything with the same `key`, `spec` and `seed`
    (a key that is JSON with a "recipe") and a top-level `train` function for it (frontier.py's
    children)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    done = load_cache(cache)
    todo = list({job.key: job for job in jobs if job.key not in done}.values())
    log(f"{len(jobs) - len(todo)} of {len(jobs)} children cached in {cache}; training {len(todo)}")
    if todo:
        env_threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
        os.environ.update(env_threads)
        context = multiprocessing.get_context("spawn")  # no fork of a process that imported torch
        with cf.ProcessPoolExecutor(parallel, mp_context=context, initializer=_init_worker) as pool, cache.open("a") as out:
            futures = {pool.submit(train, job): job for job in todo}
            for n, future in enumerate(cf.as_completed(futures), 1):
                job = futures[future]
                row = {"key": job.key, **future.result()}
                out.write(json.dumps(row) + "\n")
                out.flush()
                done[job.key] = row
                log(f"[{n}/{len(todo)}] {job.spec} seed {job.seed} {json.loads(job.key)['recipe']}: "
                    f"{100 * row['acc']:.2f}% ({row['wall_s']:.0f} s)")
    return {job.key: done[job.key] for job in jobs}


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""

    def ranks(v: Sequence[float]) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):  # ties share their mean rank
            tied = v == value
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])
