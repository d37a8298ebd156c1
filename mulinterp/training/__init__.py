"""Training: SFT, ICoT (stepwise CoT internalisation) and the auxiliary running-sum loss."""

from mulinterp.training.config import REGIMES, TrainConfig
from mulinterp.training.evaluate import EvalResult, evaluate, evaluate_generated, evaluate_split, greedy_answer
from mulinterp.training.loop import Trainer, train

__all__ = ["REGIMES", "TrainConfig", "EvalResult", "evaluate", "evaluate_generated", "evaluate_split", "greedy_answer", "Trainer", "train"]
