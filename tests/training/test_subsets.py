"""The child's data: balanced subsets of a dataset's splits, and their per-process cache on a device."""

from __future__ import annotations

import numpy as np
import torch

from autoaug.training.subsets import balanced_head, device_data, load_data


def test_balanced_head_takes_classes_in_turn() -> None:
    y = np.repeat(np.arange(4), 10)  # sorted by class, as the embedded val split is
    index = balanced_head(y, 8)
    assert np.bincount(y[index], minlength=4).tolist() == [2, 2, 2, 2]
    assert index.tolist() == sorted(index.tolist())
    assert balanced_head(y, None).tolist() == list(range(40))
    assert balanced_head(y, 100).tolist() == list(range(40))


def test_device_data_is_prepared_once_per_subset(tiny_npz) -> None:
    spec = f"npz:{tiny_npz}"
    data = device_data(spec, "cpu", 12, 6)
    assert device_data(spec, "cpu", 12, 6) is data  # the cache: the same tensors, not a copy
    splits = load_data(spec, 12, 6)
    assert torch.equal(data.train_x, torch.from_numpy(splits.train_x).permute(0, 3, 1, 2))  # (12, C, H, W)
    assert np.bincount(splits.train_y).tolist() == [4, 4, 4] and len(data.val_y) == 6
    # a search's rungs each have their own subset: the last KEEP (3) stay, the least recently used goes
    other = device_data(spec, "cpu", 6, 6)
    assert len(other.train_x) == 6 and device_data(spec, "cpu", 12, 6) is data
    device_data(spec, "cpu", 9, 6)
    device_data(spec, "cpu", 3, 6)  # (6, 6) was used least recently
    assert device_data(spec, "cpu", 12, 6) is data and device_data(spec, "cpu", 6, 6) is not other
