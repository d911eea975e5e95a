"""The training recipes' settings and their defaults. Plain data, so `train --help` and `distil --help` show them
without importing torch (seconds)."""

from dataclasses import dataclass, field


def setting(default, help):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainingSettings:
    """What `train` exposes as --options (the help is each field's)."""

    query_max_length: int = setting(32, "query tokens before the EOS (MS MARCO: 32; long documents: keep it)")
    passage_max_length: int = setting(128, "passage tokens, EOS included (MS MARCO: 128; LoCo: 2048 or 8192)")
    hard_negatives: int = setting(0, "BM25 negatives per query, mined from the corpus")
    batch_size: int = setting(32, "queries per step and device; the other queries' passages are in-batch negatives")
    cached_mini_batch_size: int = setting(
        0, "> 0: CachedMultipleNegativesRankingLoss with this mini-batch (large batches in little memory)"
    )
    epochs: float = setting(1.0, "passes over the data")
    max_steps: int = setting(-1, "stop after this many steps (-1: after --epochs)")
    learning_rate: float = setting(2e-5, "peak learning rate (linear decay)")
    warmup_ratio: float = setting(0.1, "share of the steps that warm the learning rate up")
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass (less memory)")
    bf16: bool = setting(False, "bfloat16 mixed precision (transformers' Trainer)")
    seed: int = setting(0, "seed of the data order and of the sampled hard negatives")
    logging_steps: int = setting(10, "log the loss every N steps")
    data: list = field(default_factory=list)  # recorded in training.json


# distil: share of batches per source (see `distil --shares`)
DEFAULT_SHARES = {"wordnet": 0.92, "qmsum": 0.08, "gloss_documents": 0.0, "meetings": 0.0}
