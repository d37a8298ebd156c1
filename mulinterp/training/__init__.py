"""Training: SFT, ICoT (stepwise CoT internalisation) and the auxiliary running-sum loss.

Evaluation (greedy decoding, exact match) lives in :mod:`mulinterp.evaluation`, since the
analyses use it too; its names are re-exported here so that ``from mulinterp.training import
evaluate_generated`` (older notebooks and scripts) keeps working.
"""

from mulinterp.evaluation import EvalResult, evaluate, evaluate_generated, evaluate_split, greedy_answer
from mulinterp.training.config import REGIMES, TrainConfig
from mulinterp.training.loop import Trainer, train

__all__ = [
    "REGIMES",
    "TrainConfig",
    "EvalResult",
    "evaluate",
    "evaluate_generated",
    "evaluate_split",
    "greedy_answer",
    "Trainer",
    "train",
]
