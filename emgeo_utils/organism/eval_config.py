"""How the organism's EM is evaluated (the registry entry's `eval:` section): a leaf, so the organism's
configs name it without importing the evaluation itself."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    questions_per_domain: int = 4     # held-out (eval) templates, filled; never in fine-tuning data
    samples_per_question: int = 8     # answers sampled per question at temperature 1
    general_samples_per_question: int = 8
    max_new_tokens: int = 24
    exact: bool = True                # also the exact probability of harmful answers
    batch_size: int = 512
