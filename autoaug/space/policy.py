"""Policies: the frozen data a search produces and training consumes, and their JSON file format.

A policy is a tuple of sub-policies; a sub-policy is ordered operations; an operation is an op
name, a physical probability and a magnitude bin. As controller tokens, a policy of 5
sub-policies of 2 ops is 30 decisions, `MultiDiscrete([16, 11, 10] * 10)`.

Files store op names and physical probabilities, never token ids or list positions. Loading
checks everything and raises `PolicyError` naming the file, the place and what was expected;
nothing is clamped or rounded away.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import albumentations as A
import torch

from autoaug.errors import PolicyError
from autoaug.files import save_json
from autoaug.space.albu import compose
from autoaug.space.augment import apply_ops, augment, signed_magnitudes
from autoaug.space.ops import (
    MAGNITUDE_BINS, OP_NAMES, OPS_BY_NAME, PROB_BINS, RANGE_READINGS, get_op, op_to_albumentations,
)
from autoaug.space.published import PUBLISHED, RANGE_READING
from autoaug.space.targets import Augmented, TargetParams

FORMAT = "autoaug.policy"
VERSION = 1
NUM_SUB_POLICIES = 5
OPS_PER_SUB_POLICY = 2
DECISIONS_PER_OP = (len(OP_NAMES), PROB_BINS, MAGNITUDE_BINS)  # (16, 11, 10)
SEARCH_NVEC: tuple[int, ...] = DECISIONS_PER_OP * (NUM_SUB_POLICIES * OPS_PER_SUB_POLICY)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool (JSON's true is no number), not beyond float range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int such as 10**400 has no float value
        return False


def _check_prob(prob: Any, where: str) -> float:
    if not is_number(prob):
        raise PolicyError(f"{where}: expected a probability (number), got {_short(prob)}")
    scaled = prob * (PROB_BINS - 1)
    if not 0 <= prob <= 1 or abs(scaled - round(scaled)) > 1e-9:
        raise PolicyError(f"{where}: expected a probability in 0.0, 0.1, ..., 1.0, got {prob!r}")
    return round(scaled) / (PROB_BINS - 1)


def _check_bin(name: str, magnitude_bin: Any, where: str) -> int | None:
    if magnitude_bin is None:
        if get_op(name).has_magnitude:
            raise PolicyError(f"{where}: {name} needs a magnitude bin 0..{MAGNITUDE_BINS - 1}, got null")
        return None
    if isinstance(magnitude_bin, bool) or not isinstance(magnitude_bin, int):
        raise PolicyError(f"{where}: expected a magnitude bin (integer 0..{MAGNITUDE_BINS - 1}), got {_short(magnitude_bin)}")
    if not 0 <= magnitude_bin < MAGNITUDE_BINS:
        raise PolicyError(f"{where}: expected a magnitude bin in 0..{MAGNITUDE_BINS - 1}, got {_short(magnitude_bin)}")
    return magnitude_bin


@dataclass(frozen=True)
class Operation:
    """One op of a sub-policy. `magnitude_bin` is None only for ops without a magnitude."""

    name: str
    prob: float
    magnitude_bin: int | None

    def __post_init__(self) -> None:
        where = f"operation {self.name!r}"
        get_op(self.name)
        object.__setattr__(self, "prob", _check_prob(self.prob, where + " prob"))
        _check_bin(self.name, self.magnitude_bin, where + " magnitude_bin")

    def magnitude_in(self, reading: str) -> float:
        """Physical magnitude before the random sign (0.0 for ops without one) under a range
        reading (`autoaug.space.ops.RANGE_READINGS`)."""
        return OPS_BY_NAME[self.name].magnitude(self.magnitude_bin or 0, reading=reading)

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "prob": self.prob, "magnitude_bin": self.magnitude_bin}

    def describe(self, reading: str = "paper") -> str:
        op = OPS_BY_NAME[self.name]
        if not op.has_magnitude:
            return f"{self.name}(p={self.prob:.1f})"
        sign = "+/-" if op.signed else ""
        value = self.magnitude_in(reading)
        return f"{self.name}(p={self.prob:.1f}, bin {self.magnitude_bin} = {sign}{value:.3g} {op.unit})"

    def __str__(self) -> str:
        return self.describe()


SubPolicy = tuple[Operation, ...]


@dataclass(frozen=True)
class Policy:
    """Sub-policies, one of which is drawn uniformly per image; ops fire with their probability."""

    sub_policies: tuple[SubPolicy, ...]
    provenance: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    range_reading: str = "paper"
    """Which ranges the bins are read on (`autoaug.space.ops.RANGE_READINGS`): "paper" (the appendix
    table; what search uses) or "reference" (TranslateX/Y over 10 px of 32, as in the reference
    code that found the published CIFAR-10 and SVHN policies; no other op differs)."""
    # (S, depth) tables of the batched execution; a sub-policy shorter than `depth` pads with
    # probability 0
    _op_ids: torch.Tensor = field(init=False, repr=False, compare=False, hash=False)
    _probs: torch.Tensor = field(init=False, repr=False, compare=False, hash=False)
    _magnitudes: torch.Tensor = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.range_reading not in RANGE_READINGS:
            raise PolicyError(
                f"range_reading: expected one of {', '.join(RANGE_READINGS)}, got {self.range_reading!r}"
            )
        if not self.sub_policies:
            raise PolicyError("a policy needs at least one sub-policy, got none")
        for i, sub in enumerate(self.sub_policies):
            if not sub:
                raise PolicyError(f"sub-policy {i} is empty: expected at least one operation")
        shape = (len(self.sub_policies), max(len(sub) for sub in self.sub_policies))
        op_ids, probs, magnitudes = torch.zeros(shape, dtype=torch.long), torch.zeros(shape), torch.zeros(shape)
        for i, sub in enumerate(self.sub_policies):
            for k, op in enumerate(sub):
                op_ids[i, k], probs[i, k], magnitudes[i, k] = OP_NAMES.index(op.name), op.prob, self.magnitude(op)
        object.__setattr__(self, "_op_ids", op_ids)
        object.__setattr__(self, "_probs", probs)
        object.__setattr__(self, "_magnitudes", magnitudes)

    def __call__(self, images: torch.Tensor, generator: torch.Generator, *, masks: Any = None, boxes: Any = None,
                 keypoints: Any = None, target_params: TargetParams | None = None) -> torch.Tensor | Augmented:
        """Batched execution: per image, a sub-policy drawn uniformly, then each of its ops in
        order fires with its probability, signed ops with a random sign.

        Targets move with their image (issue #25; the rules: `autoaug.space.targets`): `masks`
        (B, H, W) or (B, K, H, W) integer, `boxes` a list of B (N_i, 4) arrays (or a (B, N, 4)
        tensor, all-NaN rows padding) in `target_params.bbox_format` (pascal_voc by default),
        `keypoints` likewise (N_i, 2) (x, y) pixels. With any of them the result is an `Augmented`,
        with the same images and the same draws as without:

            out = policy(images, g, masks=masks, boxes=[boxes_0, boxes_1])
            out.images, out.masks, out.boxes_of(0)
        """
        drawn = self.choices(images.shape[0], generator)
        return augment(images, drawn, generator, masks, boxes, keypoints, target_params)

    def choices(self, b: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(op ids, signed magnitudes, whether each fires) of `b` images, (B, depth) CPU tensors:
        a sub-policy per image, then each op's firing and sign, drawn from `generator`."""
        gdev = generator.device
        sub = torch.randint(len(self.sub_policies), (b,), generator=generator, device=gdev).cpu()  # (B,)
        fire_draw = torch.rand(b, self._op_ids.shape[1], generator=generator, device=gdev).cpu()  # (B, depth)
        op_ids = self._op_ids[sub]  # (B, depth)
        magnitudes = signed_magnitudes(self._magnitudes[sub], op_ids, generator)  # (B, depth)
        return op_ids, magnitudes, fire_draw < self._probs[sub]

    # ---- tokens (the controller's action) ------------------------------------------------

    @classmethod
    def from_tokens(cls, tokens: Sequence[int], provenance: dict[str, Any] | None = None) -> Policy:
        """Decode (op id, prob bin, magnitude bin) triples, two ops per sub-policy."""
        tokens = [int(t) for t in tokens]
        group = len(DECISIONS_PER_OP) * OPS_PER_SUB_POLICY
        if not tokens or len(tokens) % group:
            raise PolicyError(f"tokens: expected a positive multiple of {group} decisions, got {len(tokens)}")
        ops = []
        for k in range(0, len(tokens), 3):
            op_id, prob_bin, magnitude_bin = tokens[k : k + 3]
            for value, n, what in ((op_id, len(OP_NAMES), "op id"), (prob_bin, PROB_BINS, "prob bin"),
                                   (magnitude_bin, MAGNITUDE_BINS, "magnitude bin")):
                if not 0 <= value < n:
                    raise PolicyError(f"tokens[{k}:{k + 3}]: expected {what} in 0..{n - 1}, got {value}")
            ops.append(Operation(OP_NAMES[op_id], prob_bin / (PROB_BINS - 1), magnitude_bin))
        subs = tuple(tuple(ops[i : i + OPS_PER_SUB_POLICY]) for i in range(0, len(ops), OPS_PER_SUB_POLICY))
        return cls(subs, dict(provenance or {}))

    def to_tokens(self) -> list[int]:
        """Inverse of `from_tokens` (ops without a magnitude and no bin encode bin 0)."""
        if any(len(sub) != OPS_PER_SUB_POLICY for sub in self.sub_policies):
            raise PolicyError(f"only policies of {OPS_PER_SUB_POLICY}-op sub-policies have tokens")
        out: list[int] = []
        for sub in self.sub_policies:
            for op in sub:
                out += [OP_NAMES.index(op.name), round(op.prob * (PROB_BINS - 1)), op.magnitude_bin or 0]
        return out

    # ---- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "kind": "policy",
                "sub_policies": [[op.to_json() for op in sub] for sub in self.sub_policies],
                "range_reading": self.range_reading, "provenance": self.provenance}

    @classmethod
    def from_json(cls, doc: Any, where: str = "policy") -> Policy:
        _check_header(doc, where, "policy")
        subs_doc = doc.get("sub_policies")
        if not isinstance(subs_doc, list) or not subs_doc:
            raise PolicyError(f"{where}: sub_policies: expected a non-empty list, got {_short(subs_doc)}")
        subs = []
        for i, sub_doc in enumerate(subs_doc):
            at = f"{where}: sub_policies[{i}]"
            if not isinstance(sub_doc, list) or not sub_doc:
                raise PolicyError(f"{at}: expected a non-empty list of operations, got {_short(sub_doc)}")
            subs.append(tuple(_operation_from_json(op_doc, f"{at}[{j}]") for j, op_doc in enumerate(sub_doc)))
        provenance = read_provenance(doc, where)
        reading = doc.get("range_reading", "paper")  # files written before issue #8 have none
        if reading not in RANGE_READINGS:
            raise PolicyError(
                f"{where}: range_reading: expected one of {', '.join(RANGE_READINGS)}, got {_short(reading)}"
            )
        return cls(tuple(subs), provenance, reading)

    def magnitude(self, op: Operation) -> float:
        """Physical magnitude of one of this policy's operations, under the policy's range reading."""
        return op.magnitude_in(self.range_reading)

    def save(self, path: str | Path) -> Path:
        return save_json(self.to_json(), path)

    def to_albumentations_transforms(self, targets: TargetParams | None = None) -> list[A.BasicTransform]:
        """`OneOf` over the sub-policies (weights all 1), each a `Sequential` of its ops. An op of
        probability 0 never fires and is left out; its sub-policy stays, empty if nothing is left,
        so each sub-policy keeps its 1/K chance (issue #22). `targets`: the mask fills."""
        subs = [A.Sequential([op_to_albumentations(op.name, self.magnitude(op), op.prob, targets)
                              for op in sub if op.prob > 0], p=1.0)
                for sub in self.sub_policies]
        return [A.OneOf(subs, p=1.0)]

    def to_albumentations(self, image_pool: Any = None, targets: TargetParams | None = None) -> A.Compose:
        """An `A.Compose` running this policy per image (see `autoaug.space.export`); with
        `targets`, on masks, boxes and keypoints too:

            pipeline = policy.to_albumentations(targets=TargetParams(bbox_format="coco", bbox_labels=("labels",)))
            out = pipeline(image=img, mask=mask, bboxes=boxes, labels=labels)
        """
        return compose(self.to_albumentations_transforms(targets), image_pool=image_pool, targets=targets)

    def summary(self) -> str:
        return str(self.provenance.get("source") or f"policy of {len(self.sub_policies)} sub-policies")

    def describe(self) -> str:
        reading = "" if self.range_reading == "paper" else f" (range reading: {self.range_reading})"
        lines = [f"{len(self.sub_policies)} sub-policies{reading}"]
        for i, sub in enumerate(self.sub_policies):
            lines.append(f"  {i:2d}: " + " -> ".join(op.describe(self.range_reading) for op in sub))
        return "\n".join(lines)


def _short(value: Any) -> str:
    """`value` as JSON (a string as repr), cut to fit in one line of an error."""
    try:
        text = json.dumps(value) if not isinstance(value, str) else repr(value)
    except (TypeError, ValueError, RecursionError):  # too deep, or an int too long to print
        text = f"a {type(value).__name__} too large to print"
    return text if len(text) <= 60 else text[:57] + "..."


def read_provenance(doc: dict[str, Any], where: str) -> dict[str, Any]:
    """The "provenance" object of a native document ({} when it has none)."""
    provenance = doc.get("provenance", {})
    if not isinstance(provenance, dict):
        raise PolicyError(f"{where}: provenance: expected an object, got {_short(provenance)}")
    return provenance


def _check_header(doc: Any, where: str, kind: str) -> None:
    if not isinstance(doc, dict):
        raise PolicyError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise PolicyError(f"{where}: expected \"format\": \"{FORMAT}\", got {_short(doc.get('format'))}")
    if doc.get("version") != VERSION or isinstance(doc.get("version"), bool):  # true == 1
        raise PolicyError(f"{where}: expected \"version\": {VERSION}, got {_short(doc.get('version'))}")
    if doc.get("kind") != kind:
        raise PolicyError(f"{where}: expected \"kind\": \"{kind}\", got {_short(doc.get('kind'))}")


def _operation_from_json(doc: Any, where: str) -> Operation:
    if not isinstance(doc, dict):
        raise PolicyError(f"{where}: expected an object with op, prob, magnitude_bin, got {_short(doc)}")
    unknown = set(doc) - {"op", "prob", "magnitude_bin"}
    if unknown:
        raise PolicyError(f"{where}: unknown keys {sorted(unknown)}; expected op, prob, magnitude_bin")
    name = doc.get("op")
    if not isinstance(name, str) or name not in OPS_BY_NAME:
        raise PolicyError(f"{where}.op: unknown op {_short(name)}; expected one of {', '.join(OP_NAMES)}")
    if "prob" not in doc:
        raise PolicyError(f"{where}: missing \"prob\"")
    prob = _check_prob(doc["prob"], f"{where}.prob")
    magnitude_bin = _check_bin(name, doc.get("magnitude_bin"), f"{where}.magnitude_bin")
    return Operation(name, prob, magnitude_bin)


def published_policy(name: str) -> Policy:
    """A policy from the AutoAugment paper: autoaugment-cifar10, autoaugment-svhn, autoaugment-imagenet."""
    if name not in PUBLISHED:
        raise PolicyError(f"unknown published policy {name!r}; expected one of {', '.join(PUBLISHED)}")
    subs = tuple(tuple(Operation(*triple) for triple in sub) for sub in PUBLISHED[name])
    return Policy(subs, {"source": f"{name} (Cubuk et al. 2018, AutoAugment, appendix)"}, RANGE_READING[name])


def provenance(source: str, **extra: Any) -> dict[str, Any]:
    """A provenance record: where a policy came from and when."""
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    return {"source": source, "created": now, **extra}


def apply_policies(
    images: torch.Tensor, policies: Sequence[Policy | None], generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """K augmented copies of one uint8 batch (B, C, H, W), copy j by `policies[j]` (None: left
    alone) with its draws from `generators[j]`, stacked along the channels: (B, K * C, H, W).

    Copy j has exactly the pixels `policies[j](images, generators[j])` gives, but the K copies
    share one `apply_ops` call: a kernel call per op and stage for all K (fused children,
    issue #11), not K times as many."""
    b, c, h, w = images.shape
    depth = max((p._op_ids.shape[1] for p in policies if p is not None), default=1)
    drawn = []
    for policy, generator in zip(policies, generators):
        if policy is None:  # fires nothing, draws nothing
            drawn.append((torch.zeros(b, 0, dtype=torch.long), torch.zeros(b, 0), torch.zeros(b, 0, dtype=torch.bool)))
        else:
            drawn.append(policy.choices(b, generator))
    # a shallower policy (or None) never fires its missing stages: padded with fire = False
    op_ids, magnitudes, fire = (
        torch.cat([torch.cat([t, t.new_zeros(b, depth - t.shape[1])], dim=1) for t in parts])
        for parts in zip(*drawn)
    )  # (K * B, depth) each
    stacked = images.repeat(len(policies), 1, 1, 1)  # (K * B, C, H, W): copy j at rows j * B ..
    out = apply_ops(stacked, op_ids, magnitudes, fire, generators)
    return out.view(len(policies), b, c, h, w).transpose(0, 1).reshape(b, len(policies) * c, h, w)
