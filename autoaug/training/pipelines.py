"""The albumentations side of training: a whole exported training pipeline run per image in
DataLoader worker processes (`AlbumentationsAugment`, `autoaug train --augment albumentations`),
the way a user trains with an exported pipeline, and the train / eval pipeline files of a
policy normalised with a dataset's statistics as `autoaug train` computes them
(`export_pipeline`: `autoaug export --pipeline`, `autoaug export-albumentations --pipeline`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch

from autoaug.errors import ConfigError, PipelineError, shown
from autoaug.space.albu import check_runs, normalization, set_image_pool
from autoaug.space.pipeline import (
    PIPELINES,
    check_tensor_pipeline,
    eval_pipeline,
    load_pipeline_file,
    save_pipeline,
    seed_worker,
    train_pipeline,
)
from autoaug.space.specs import PolicySpec
from autoaug.space.targets import TargetParams
from autoaug.training.config import TrainConfig
from autoaug.training.data import load_splits
from autoaug.training.device import DeviceData, prepare


@dataclass(frozen=True, eq=False)
class AlbumentationsAugment:
    """Run a whole albumentations training pipeline (`autoaug.space.pipeline.train_pipeline`: policy,
    normalisation, pad-crop, flip, Cutout, `ToTensorV2`) per image in DataLoader worker
    processes instead of the batched torch path: what a user does with an exported pipeline.
    The pipeline holds the whole recipe: `TrainConfig.standard` and `.cutout` are not applied
    again on top of it."""

    pipeline: Any
    """An albumentations Compose ending in ToTensorV2: HWC uint8 -> float32 (C, H, W) tensor."""
    workers: int = 2
    """DataLoader worker processes (>= 1), persistent across epochs."""

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be an int >= 1, got {shown(self.workers)}")
        check_tensor_pipeline(self.pipeline, "the albumentations training pipeline")


class AlbumentationsDataset(torch.utils.data.Dataset):
    """HWC uint8 images and labels; each item is run through an albumentations pipeline that
    ends in ToTensorV2 (checked here: PipelineError otherwise) and gives (float (C, H, W), label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, pipeline: Any) -> None:
        check_tensor_pipeline(pipeline, "the pipeline of an AlbumentationsDataset")
        self.images = images  # (N, H, W, C) uint8
        self.labels = labels  # (N,) int64
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]  # (H, W, C) uint8
        out = self.pipeline(image=image)["image"]  # (C, H, W) float32
        if not isinstance(out, torch.Tensor) or out.dtype != torch.float32 or out.ndim != 3:
            got = f"{out.dtype} {tuple(out.shape)}" if hasattr(out, "shape") else type(out).__name__
            raise PipelineError(f"the albumentations pipeline must give float32 (C, H, W) tensors, got {got}")
        return out, int(self.labels[index])


def loader_batches(
    augment: AlbumentationsAugment, data: DeviceData, config: TrainConfig, seed: int
) -> Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """A function giving one epoch of (model input float32 (B, C, H, W), labels) on data's device."""
    dataset = AlbumentationsDataset(
        np.ascontiguousarray(data.train_x.permute(0, 2, 3, 1).cpu().numpy()),  # (N, H, W, C)
        data.train_y.cpu().numpy(),
        augment.pipeline,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=min(config.batch_size, len(dataset)),
        shuffle=True,
        drop_last=True,
        num_workers=augment.workers,
        persistent_workers=True,
        worker_init_fn=seed_worker,  # a stream per worker, from the loader's seed
        generator=torch.Generator().manual_seed(seed),
        pin_memory=data.device.type == "cuda",
    )

    def epoch() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, labels in loader:  # (B, C, H, W) float32, (B,)
            x = x.to(data.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            yield x, labels.to(data.device, non_blocking=True)

    return epoch


# --- the albumentations path of a policy spec (`autoaug train --augment albumentations`) ------


def training_pipeline(spec: PolicySpec, data: DeviceData, config: TrainConfig) -> A.Compose:
    """The whole albumentations training pipeline of `spec` with `config`'s pad-crop, flip and
    Cutout and `data`'s normalisation: the object `autoaug export-albumentations --pipeline
    train` writes (or the pipeline file given, as it is)."""
    if spec.pipeline_file is not None:
        return load_pipeline_file(spec.pipeline_file)
    return train_pipeline(
        spec.augmenter, mean=data.mean.tolist(), std=data.std.tolist(),
        image_size=(int(data.train_x.shape[2]), int(data.train_x.shape[3])),
        standard=config.standard, flip=config.flip, cutout=config.cutout,
    )


def albumentations_augment(
    spec: PolicySpec, data: DeviceData, config: TrainConfig, workers: int, image_pool: np.ndarray | None = None
) -> AlbumentationsAugment:
    """The same recipe as one albumentations pipeline run in DataLoader workers, read back from
    its serialised form (what a file holds), SamplePairing fed from `image_pool`."""
    pipeline = A.from_dict(A.to_dict(training_pipeline(spec, data, config)))
    if image_pool is not None:
        set_image_pool(pipeline, image_pool)
    return AlbumentationsAugment(pipeline, workers)


def albumentations_file(
    spec: PolicySpec, data: DeviceData, config: TrainConfig, workers: int, image_pool: np.ndarray, out: Path
) -> tuple[AlbumentationsAugment, str | None]:
    """What `autoaug train --augment albumentations` trains from: the pipeline file given, or
    OUT/train.albumentations.json written here by the very code of `autoaug export-albumentations
    --pipeline train`, read with `A.load` (PipelineError unless it ends in ToTensorV2), so what
    ships is what is measured. Also a warning, or None, when its Normalize is not the dataset's
    (val and test are normalised with the dataset's)."""
    path = spec.pipeline_file
    if path is None:
        path = save_pipeline(training_pipeline(spec, data, config), out / "train.albumentations.json")
    pipeline = load_pipeline_file(path)
    # The whole pipeline runs on this data's image size before any worker starts (issue #23): a
    # crop to another size would train on it silently, one larger than the padded image would
    # fail in a DataLoader worker.
    check_runs(pipeline, str(path), (int(data.train_x.shape[2]), int(data.train_x.shape[3])))
    set_image_pool(pipeline, image_pool)
    stats, warning = normalization(pipeline), None
    ours = (data.mean.tolist(), data.std.tolist())
    if stats is None:
        warning = (f"warning: {path} has no Normalize; val and test images are normalised with "
                   "the training set's mean and std")
    elif not np.allclose(stats, ours, rtol=1e-3, atol=0.05):
        warning = (f"warning: {path} normalises with mean {np.round(stats[0], 2).tolist()}, std "
                   f"{np.round(stats[1], 2).tolist()}; val and test images are normalised with "
                   f"this dataset's {np.round(ours[0], 2).tolist()}, {np.round(ours[1], 2).tolist()}")
    return AlbumentationsAugment(pipeline, workers), warning


def export_pipeline(kind: str, spec: PolicySpec, dataset: str, image_size: int | None = None,
                    targets: TargetParams | None = None) -> A.Compose:
    """The `--pipeline train` or `eval` albumentations pipeline of `spec`, normalised with the
    statistics of `dataset`'s training split as `autoaug train` computes them; `targets`: its mask
    fills and bbox / keypoint formats (`autoaug.space.targets`)."""
    return export_pipelines(spec, dataset, image_size, (kind,), targets)[kind]


def export_pipelines(
    spec: PolicySpec, dataset: str, image_size: int | None = None, kinds: tuple[str, ...] = PIPELINES[1:],
    targets: TargetParams | None = None,
) -> dict[str, A.Compose]:
    """`export_pipeline` of each of `kinds` (train and eval), the dataset's statistics computed once."""
    for kind in kinds:
        if kind not in PIPELINES[1:]:
            raise PipelineError(f"unknown pipeline {kind!r}; expected train or eval")
    if spec.pipeline_file is not None:
        raise PipelineError(f"{spec.spec} is already an albumentations pipeline; expected a policy")
    mean, std, size = dataset_stats(dataset, image_size)
    return {kind: eval_pipeline(mean=mean, std=std, targets=targets) if kind == "eval" else train_pipeline(
        spec.augmenter, mean=mean, std=std, image_size=size, standard=spec.standard, flip=spec.flip,
        cutout=spec.cutout, targets=targets,
    ) for kind in kinds}


def dataset_stats(spec: str, image_size: int | None = None) -> tuple[list[float], list[float], tuple[int, int]]:
    """(mean, std, (H, W)) of dataset `spec`'s training split as `autoaug train` computes them
    (the same `prepare`): the numbers an exported train / eval pipeline normalises with."""
    data = prepare(load_splits(spec, image_size=image_size), "cpu")
    return data.mean.tolist(), data.std.tolist(), (data.train_x.shape[2], data.train_x.shape[3])
