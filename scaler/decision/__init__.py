"""Budget recommendation: spend a compute budget on model size or on cleaner data? (docs/design.md §5.9)

One module per idea: `budget` (units to FLOPs, the refusal beyond reach), `options` (tier options
from a data build), `search` (the law at every bootstrap sample; each tier's best N), `crossover`
(the budget where the verdict flips), `experiments` (the next runs and whether the verdict is
settled), `result` (what is returned and printed), `answer` (`decide`: from a law's samples and
the tier options; `recommend_from_fit`: from a fit).
`scaler.recommend` (the API's function) is `scaler.session.recommend`: a fit and a build folder.
"""

from __future__ import annotations

from scaler.fitting.predict import EXTRAPOLATION_REFUSE, EXTRAPOLATION_WARN
from scaler.decision.answer import decide, recommend_from_fit
from scaler.decision.budget import ExtrapolationRefused, to_flops
from scaler.decision.options import tier_options_from_report
from scaler.decision.result import Experiment, OptionResult, Recommendation, TierOption
from scaler.decision.search import PUBLISHED_R_D_STAR, LawSamples

__all__ = [
    "PUBLISHED_R_D_STAR", "EXTRAPOLATION_WARN", "EXTRAPOLATION_REFUSE", "TierOption", "OptionResult", "Experiment",
    "Recommendation", "ExtrapolationRefused", "LawSamples", "to_flops", "tier_options_from_report", "decide",
    "recommend_from_fit",
]
