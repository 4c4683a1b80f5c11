"""The fitted law at every bootstrap sample, and the compute-optimal N for a tier's budget
(docs/design.md §5.9). `LawSamples` evaluates the law's own formula (`Law.predict_log`, theta as
(P, S, 1)) for a run on one tier from its pool: repeated data counts by Muennighoff et al. 2023,
D' = U + U R* (1 - exp(-R/R*)), R = D/U - 1, with the law's R_D* where it fits one, else the
published 15.4 (`PUBLISHED_R_D_STAR`, a borrowed constant). `_optimise` finds, per sample, the
N in [1, C/6] minimising the loss of a run that spends C under the fit's convention
(`scaler.fitting.compute.minimise_log_n`: a dense grid, then golden-section refinement)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from scaler.fitting.compute import Compute, max_log_n, minimise_log_n
from scaler.fitting.laws import repeated_tokens
from scaler.decision.result import TierOption


PUBLISHED_R_D_STAR = 15.4  # Muennighoff et al. 2023, R_D* = 15.39
MIN_FLOPS_PER_PARAM_TOKEN = 6.0  # the search's largest N is C / 6: one token per parameter under 6ND


@dataclass(frozen=True)
class LawSamples:
    """The fitted law at S parameter rows (`thetas`, (S, P)) and what a run on one tier feeds it.

    Every loss is the law's own formula (`Law.predict_log`, theta as (P, S, 1) so each row is one
    sample), on the columns of a run that trains on `tier` alone from a pool of `pool` unique
    tokens: a quality law gets w_tier = 1 (and U_t = pool when it fits repetition); a law with a U
    column (data_constrained) gets U = pool; a law with neither sees its tokens repeated,
    D' = repeated_tokens(D, pool, R_D*) with the published R_D* (Muennighoff et al. 2023), times
    the option's kappa (1 unless given)."""

    law: Any
    thetas: np.ndarray
    kappa: Mapping[str, float]  # each option's kappa, used by a law that fits none
    r_star: np.ndarray  # (S,) the repetition constant: the law's fitted R_D*, else the published one
    r_star_source: str

    @classmethod
    def of(cls, law: Any, thetas: np.ndarray, tiers: Sequence[TierOption]) -> LawSamples:
        thetas = np.asarray(thetas, dtype=np.float64).reshape(len(thetas), -1)
        family, names = law.spec.get("family"), list(law.param_names)
        wanted = set(law.columns) - {"N", "D", "U"} - ({f"{p}_{t}" for t in law.spec.get("tiers", ()) for p in "wU"}
                                                       if family == "quality" else set())
        if wanted:
            raise ValueError(f"law {law.name!r} needs columns {sorted(wanted)} that a tier's run does not give; "
                             "recommend needs a law of N and D (chinchilla, kaplan, overtrain, broken, "
                             "data_constrained) or the quality law")
        if family == "quality" and {t.name for t in tiers} - set(law.spec["tiers"]):
            raise ValueError(f"tiers {sorted({t.name for t in tiers} - set(law.spec['tiers']))} are not the quality "
                             f"law's ({', '.join(law.spec['tiers'])})")
        r_names = [n for n in names if n.startswith("log_R_D_star")]  # one shared, or one per tier
        if not r_names:
            return cls(law, thetas, {t.name: t.kappa for t in tiers}, np.full(len(thetas), PUBLISHED_R_D_STAR),
                       "published (Muennighoff et al. 2023)")
        logs = thetas[:, [names.index(n) for n in r_names]]
        source = "fitted" if r_names == ["log_R_D_star"] else "fitted per tier (geometric mean of " + ", ".join(
            f"{n.removeprefix('log_R_D_star_')} {math.exp(logs[0, j]):.3g}" for j, n in enumerate(r_names)) + ")"
        return cls(law, thetas, {t.name: t.kappa for t in tiers}, np.exp(logs.mean(axis=1)), source)

    def __len__(self) -> int:
        return len(self.thetas)

    def take(self, rows: Any) -> LawSamples:
        """These samples at `rows` (a slice, or indices that may repeat)."""
        return replace(self, thetas=self.thetas[rows], r_star=self.r_star[rows])

    def kappa_of(self, tier: str) -> float:
        """The tier's kappa at row 0 (the point estimate): fitted by a quality law, else the option's."""
        name = f"log_kappa_{tier}"
        return float(np.exp(self.thetas[0, self.law.param_names.index(name)])) if name in self.law.param_names \
            else float(self.kappa[tier])

    def loss_nd(self, log_n: np.ndarray, tokens: Any, pool: float, tier: str) -> np.ndarray:
        """Predicted loss (S, K) of runs on `tier` alone at log_n (S, K) and `tokens` (broadcasting
        to it), each row under its own sample."""
        spec, r_star = self.law.spec, self.r_star[:, None]
        cols: dict[str, Any] = {"N": np.exp(log_n)}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if spec.get("family") == "quality":
                cols.update({f"w_{t}": float(t == tier) for t in spec["tiers"]})
                if spec.get("pools"):
                    cols.update({"D": tokens, **{f"U_{t}": pool for t in spec["tiers"]}})
                else:
                    cols["D"] = repeated_tokens(tokens, pool, r_star, xp=np)
            elif "U" in self.law.columns:
                cols.update(D=tokens, U=pool)
            else:
                cols["D"] = self.kappa[tier] * repeated_tokens(tokens, pool, r_star, xp=np)
            return np.exp(self.law.predict_log(self.thetas.T[:, :, None], cols, np))


def _loss(log_n: np.ndarray, c_train: Any, pool: float, p: LawSamples, tier: str, compute: Compute) -> np.ndarray:
    """The loss of runs that spend `c_train` FLOPs (a number, or (S, 1) per row) at log_n (S, K):
    D = compute.tokens(N, c_train)."""
    return p.loss_nd(log_n, compute.tokens(np.exp(log_n), c_train), pool, tier)


def _loss_at(n: float, d: float, pool: float, p: LawSamples, tier: str) -> np.ndarray:
    """Per-sample loss of one fixed run (N, D) on `tier` with pool `pool`: (S,). A fixed run's
    loss does not depend on the compute convention."""
    return p.loss_nd(np.full((len(p), 1), math.log(n)), d, pool, tier)[:, 0]


def _optimise(c_train: float, pool: float, p: LawSamples, tier: str, compute: Compute
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the log N in [0, log(C/6)] minimising the loss: (log_n (S,), loss (S,))."""
    return minimise_log_n(lambda x: _loss(x, c_train, pool, p, tier, compute), 0.0, float(max_log_n(c_train)),
                          len(p))
