"""Successive halving inside a controller batch (issue #21): the rungs, who is promoted, and the
rule that turns rewards of several rungs into the one reward per policy PPO learns from.

A search with `[fidelity]` rungs trains every policy of a batch at rung 0 (the cheapest child),
then the best `promote` fraction of them at rung 1, and so on up to the search's own child. Each
rung of each policy is a trial of the store (its `rung` column), on the seed the policy had at
rung 0, so a policy's rewards at every rung are paired with the same reference child: with
`reward.paired` the batch's seed and one reference child per rung.

Promotion ranks the policies of a rung by their raw reward there, ties to the lower slot. With
paired rewards every policy of the rung shares the seed and the reference, so the raw order is
the paired order, and it needs no reference that might have failed. It depends on nothing but
stored rewards: a resumed search promotes the same policies.

The PPO rule (`ppo_rewards`): a policy's reward for PPO is its reward at the highest rung it has
a reward at, moved onto the cheapest rung's scale by chaining the rungs. Rung h+1's rewards are
shifted as one block so that the lowest of them sits where the lowest rung-h value of the same
policies sat. Within a rung, differences stay the measured ones (on one seed, so paired); between
the policies that stopped at rung h and those promoted above it, the gap is the one measured at
rung h. So a promoted policy never ranks below one that stopped earlier (it ties only with one it
tied with at the rung that promoted it), nothing invented enters the advantages, and with one rung
the values are the rewards themselves: the search as it was. The values then go to PPO as rewards
do (advantages centred within the batch, `autoaug.search.ppo`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from autoaug.search.config import SearchConfig
from autoaug.search.store import Trial

RUNG_KEY = "rung"
"""Payload key of the child settings a rung below the top trains with ({"epochs": E,
"train_subset": N, "image_size": S, "cutout": C}, only those that differ from the search's
child) and of a rung's shared trunk ({"trunk": T}, `FidelityConfig.trunk`); the top rung's payload
has none without a trunk, so its trials look like a one-rung search's."""


def rung_payload(config: SearchConfig, rung: int, payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` as trained at `rung`: with the rung's settings where they differ from the top's,
    and its shared trunk's length where it has one (the top rung's too)."""
    settings = config.rung_settings
    changed = {k: v for k, v in settings[rung].items() if k != "trunk" and v != settings[-1][k]}
    if "trunk" in settings[rung]:
        changed["trunk"] = settings[rung]["trunk"]
    return {**payload, RUNG_KEY: changed} if changed else payload


def without_rung(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` as the search's own child trains it, whole (the verdict's)."""
    return {k: v for k, v in payload.items() if k != RUNG_KEY}


def top_payload(config: SearchConfig, payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` as the search's top rung trains it: the re-evaluation's child. A candidate from a
    rung below loses that rung's settings; where the top rung has a shared trunk, the child goes
    on from a trunk of the re-evaluation's seed, so the re-evaluation measures on fresh seeds the
    reward the search ranked its policies by (at about half a whole child's cost)."""
    return rung_payload(config, config.fidelity.rungs - 1, without_rung(payload))


def promoted_count(n: int, promote: float) -> int:
    """How many of a rung's `n` policies go up a rung: max(1, floor(n x promote)). The epsilon
    keeps 0.1 x 10 = 1.0000000000000002 from rounding the wrong way."""
    return max(1, math.floor(n * promote + 1e-9))


def rung_sizes(n: int, config: SearchConfig) -> list[int]:
    """Policies trained at each rung of a batch of `n` when none fails (the plan's count)."""
    sizes = [n]
    for _ in range(config.fidelity.rungs - 1):
        sizes.append(promoted_count(sizes[-1], config.fidelity.promote))
    return sizes


def promote(trials: Sequence[Trial], promote: float) -> list[int]:
    """The slots of the policies of one rung that go to the next: the best `promoted_count` of the
    rung's policies by their raw reward among the done ones (a failed one has no reward to rank),
    ties to the lower slot; ascending."""
    done = sorted((t for t in trials if t.status == "done"), key=lambda t: (-t.reward, t.slot))
    return sorted(t.slot for t in done[:promoted_count(len(trials), promote)])


def ppo_rewards(by_rung: Sequence[Mapping[int, float]]) -> list[float]:
    """The reward PPO learns from for each policy of a batch, from its rewards by rung ({0: r0,
    1: r1, ...}: every rung it has a reward at, rung 0 always): the rule in the module docstring.

    Rung h+1's block of rewards is shifted so that its lowest sits at the lowest rung-h value of
    the same policies; a policy without a reward at rung h+1 keeps its rung-h value.
    """
    values = [float(rewards[0]) for rewards in by_rung]
    rung = 1
    while True:
        up = [i for i, rewards in enumerate(by_rung) if rung in rewards]
        if not up:
            return values
        shift = min(values[i] for i in up) - min(by_rung[i][rung] for i in up)
        for i in up:
            values[i] = by_rung[i][rung] + shift
        rung += 1
