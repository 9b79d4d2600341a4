"""The policy controller: an LSTM that writes an augmentation policy one decision at a time.

This module owns the network only (nanoGPT's split: the model here, training in `autoaug.search.ppo`).
A policy is a sequence of discrete decisions, `nvec[t]` choices at step `t` (`SEARCH_NVEC` for
the AutoAugment search space). The network follows the AutoAugment paper (Cubuk et al. 2019, Sec. 3):
a one-layer LSTM with 100 hidden units, one softmax per decision, the previous decision fed back
as the next input, all weights initialised uniformly in [-0.1, 0.1]. `sample()` and the
differentiable `evaluate()` run the same `_unroll()`, so a policy sampled with log-probability
`p` is evaluated to the same `p`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from autoaug.errors import PolicyError
from autoaug.space.policy import SEARCH_NVEC  # the search space owns the layout; the default here follows it


class Controller(nn.Module):
    """One-layer LSTM emitting `len(nvec)` categorical decisions, decision `t` out of `nvec[t]`;
    `generator` draws the initial weights. No ENAS-style logit temperature or tanh squashing:
    the AutoAugment paper uses neither."""

    def __init__(
        self,
        nvec: Sequence[int] = SEARCH_NVEC,
        hidden_size: int = 100,
        embedding_dim: int = 100,
        init_range: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        nvec = tuple(int(n) for n in nvec)
        if not nvec or any(n < 1 for n in nvec):
            raise ValueError(f"nvec must be a non-empty sequence of positive ints, got {nvec}")
        self.nvec = nvec
        self.hidden_size = hidden_size

        # One embedding row per (position, choice), i.e. a separate table per decision position,
        # stored as one nn.Embedding indexed with `offsets[t] + token`. Per position rather than
        # per kind (op / prob / magnitude) because it needs no knowledge of the (op, prob,
        # magnitude) layout, so any nvec works, and because it tells the LSTM which slot a
        # choice was made in (Rotate as sub-policy 0's first op vs sub-policy 4's second op)
        # instead of leaving position to be counted by the recurrent state. It costs
        # sum(nvec) * embedding_dim = 185 * 100 parameters for the default space.
        offsets = torch.tensor((0,) + nvec[:-1]).cumsum(0)  # (T,)
        self.register_buffer("offsets", offsets, persistent=False)
        self.start = nn.Parameter(torch.empty(embedding_dim))  # learned input of step 0
        self.embedding = nn.Embedding(sum(nvec), embedding_dim)
        self.lstm = nn.LSTMCell(embedding_dim, hidden_size)
        # One softmax head per decision: sizes differ between positions.
        self.heads = nn.ModuleList(nn.Linear(hidden_size, n) for n in nvec)

        # Paper, Sec. 3: "weights of the controller are initialized uniformly between -0.1 and
        # 0.1". Every parameter, biases included, so the first policies are close to uniform.
        # Drawn from `generator` (seed 0 when None), so a controller is reproducible by default
        # and its weights never depend on the global RNG.
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range, generator=generator)

    @property
    def num_decisions(self) -> int:
        return len(self.nvec)

    def _unroll(
        self,
        n: int,
        tokens: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the LSTM over all decisions: draw each token (`tokens is None`) or force the given one."""
        device = self.start.device
        x = self.start.expand(n, -1)  # (n, E)
        h = torch.zeros(n, self.hidden_size, device=device)  # (n, H)
        c = torch.zeros(n, self.hidden_size, device=device)  # (n, H)
        out_tokens, logprobs, entropies = [], [], []
        for t in range(self.num_decisions):
            h, c = self.lstm(x, (h, c))  # (n, H), (n, H)
            log_p = F.log_softmax(self.heads[t](h), dim=-1)  # (n, nvec[t])
            if tokens is None:
                tok = torch.multinomial(log_p.exp(), 1, generator=generator).squeeze(1)  # (n,)
            else:
                tok = tokens[:, t]  # (n,)
            out_tokens.append(tok)
            logprobs.append(log_p.gather(1, tok.unsqueeze(1)).squeeze(1))  # (n,)
            entropies.append(-(log_p.exp() * log_p).sum(-1))  # (n,)
            x = self.embedding(tok + self.offsets[t])  # (n, E)
        return (
            torch.stack(out_tokens, dim=1),  # (n, T)
            torch.stack(logprobs, dim=1).sum(1),  # (n,)
            torch.stack(entropies, dim=1).sum(1),  # (n,)
        )

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw `n` policies.

        Returns `tokens` (n, T) int64, `logprobs` (n,) = log-probability of each whole policy
        (sum over its decisions) and `entropies` (n,) = sum of the per-decision entropies of the
        distributions the tokens were drawn from. No gradient is recorded: these are PPO's
        `old_logprobs`; use `evaluate()` for the differentiable ones. All randomness comes from
        `generator` (`torch.multinomial`), which must live on the controller's device: the same
        generator state gives the same tokens.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        return self._unroll(n, None, generator)

    def evaluate(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities (n,) and entropies (n,) of given policies `tokens` (n, T), differentiably."""
        tokens = torch.as_tensor(tokens, device=self.start.device)
        if tokens.dim() != 2 or tokens.shape[1] != self.num_decisions:
            raise PolicyError(
                f"expected tokens of shape (n, {self.num_decisions}), got {tuple(tokens.shape)}"
            )
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise PolicyError(f"expected integer tokens, got dtype {tokens.dtype}")
        tokens = tokens.long()
        nvec = torch.tensor(self.nvec, device=tokens.device)  # (T,)
        bad = (tokens < 0) | (tokens >= nvec)  # (n, T)
        if bad.any():
            i, t = (int(v) for v in bad.nonzero()[0])
            raise PolicyError(f"token {int(tokens[i, t])} at row {i}, decision {t} is out of range "
                              f"[0, {self.nvec[t]})")
        _, logprobs, entropies = self._unroll(tokens.shape[0], tokens, None)
        return logprobs, entropies
