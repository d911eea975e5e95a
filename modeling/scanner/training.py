"""SPScanner's training recipe, on data in the published training format.

Data: JSONL, one example a line: `input_ids` (question + "\\n" + document tokens), `sentence_indices` (each unit's end
token in input_ids) and `sentence_labels` (1 for the units that answer the question). Loss: binary cross-entropy over
the real units of a batch with `pos_weight = #negatives / #positives` (`sentence_bce_loss`). Optimiser: AdamW,
betas (0.9, 0.95), torch's default weight decay 0.01 (the original's optimiser is built without its weight-decay
argument); learning rate linear warm-up over the first 10% of steps to 1e-4, then cosine down to 1e-5; gradients
clipped to norm 1.0; bfloat16 autocast on GPU.
"""

import math
import random

import torch

from mamba_retrieval.modeling.data_files import numbered_jsonl

REQUIRED_FIELDS = ("input_ids", "sentence_indices", "sentence_labels")


def read_training_jsonl(path):
    """Examples from a JSONL file, each checked: bad lines are errors naming the line and the problem."""
    examples = []
    for where, example in numbered_jsonl(path):
        check_example(example, where)
        examples.append({field: example[field] for field in REQUIRED_FIELDS})
    if not examples:
        raise ValueError(f"{path} holds no examples.")
    return examples


def check_example(example, where="example"):
    missing = [field for field in REQUIRED_FIELDS if field not in example]
    if missing:
        raise ValueError(f"{where}: missing fields {missing}; expected {list(REQUIRED_FIELDS)}.")
    ids, ends, labels = (example[field] for field in REQUIRED_FIELDS)
    if len(ends) != len(labels) or not ends:
        raise ValueError(f"{where}: {len(ends)} sentence_indices but {len(labels)} sentence_labels.")
    if any(b <= a for a, b in zip(ends, ends[1:])) or ends[0] < 0 or ends[-1] >= len(ids):
        raise ValueError(f"{where}: sentence_indices must increase and lie inside input_ids ({len(ids)} tokens).")
    if set(labels) - {0, 1}:
        raise ValueError(f"{where}: sentence_labels must be 0 or 1.")


def collate(examples, pad_token_id=0):
    """Right-padded input_ids, sentence_end_positions padded with -1, labels padded with 0."""
    length = max(len(e["input_ids"]) for e in examples)
    sentences = max(len(e["sentence_indices"]) for e in examples)
    input_ids = torch.full((len(examples), length), pad_token_id, dtype=torch.long)
    positions = torch.full((len(examples), sentences), -1, dtype=torch.long)
    labels = torch.zeros((len(examples), sentences), dtype=torch.long)
    for row, example in enumerate(examples):
        input_ids[row, : len(example["input_ids"])] = torch.tensor(example["input_ids"])
        positions[row, : len(example["sentence_indices"])] = torch.tensor(example["sentence_indices"])
        labels[row, : len(example["sentence_labels"])] = torch.tensor(example["sentence_labels"])
    return {"input_ids": input_ids, "sentence_end_positions": positions, "labels": labels}


def learning_rate_factor(step, total_steps, peak_lr=1e-4, min_lr=1e-5, warmup_fraction=0.1):
    """Multiplier of `peak_lr` at `step`: linear warm-up, then cosine decay to `min_lr` at `total_steps`."""
    warmup = int(warmup_fraction * total_steps)
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total_steps - warmup)
    return (min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))) / peak_lr


def train_scanner(
    model,
    examples,
    *,
    epochs=1,
    batch_size=1,
    gradient_accumulation_steps=1,
    peak_lr=1e-4,
    min_lr=1e-5,
    max_grad_norm=1.0,
    seed=0,
    log_every=0,
):
    """Train `model` (MambaForSentenceScoring) in place; returns the loss of every optimiser step."""
    for index, example in enumerate(examples):
        check_example(example, f"example {index}")
    device = next(model.parameters()).device
    order = list(range(len(examples)))
    batches_per_epoch = math.ceil(len(order) / batch_size)
    total_steps = max(1, epochs * batches_per_epoch // gradient_accumulation_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, total_steps, peak_lr, min_lr)
    )
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
    rng = random.Random(seed)
    model.train()
    losses, step_loss, micro = [], 0.0, 0
    for _ in range(epochs):
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            batch = {
                k: v.to(device)
                for k, v in collate(
                    [examples[i] for i in order[start : start + batch_size]], model.config.pad_token_id or 0
                ).items()
            }
            with autocast:
                loss = model(**batch).loss / gradient_accumulation_steps
            loss.backward()
            step_loss += loss.item()
            micro += 1
            if micro % gradient_accumulation_steps == 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(step_loss)
                if log_every and len(losses) % log_every == 0:
                    print(
                        f"step {len(losses)}/{total_steps}  loss {step_loss:.4f}  lr {scheduler.get_last_lr()[0]:.2e}"
                    )
                step_loss = 0.0
    model.eval()
    return losses
