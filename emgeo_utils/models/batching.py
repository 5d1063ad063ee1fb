"""The one way token sequences become a padded batch (fine-tuning, scoring, feature extraction).

Right padding keeps each row's real tokens at the same positions as alone, so causal
predictions of real tokens do not change; left padding puts every row's last token in the last
column (what next-turn readouts and generation read).
"""

from __future__ import annotations

import torch


def pad(rows: list[list], value, side: str = "right", dtype: torch.dtype = torch.long) -> torch.Tensor:
    """[len(rows), longest] tensor of `rows`, filled with `value` on the `side` each row is short."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be left or right, got {side!r}")
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=dtype)
    for i, row in enumerate(rows):
        if len(row):
            target = slice(width - len(row), width) if side == "left" else slice(0, len(row))
            out[i, target] = torch.tensor(row, dtype=dtype)
    return out


def token_batch(ids: list[list[int]], pad_id: int, side: str = "right",
                labels: list[list[int]] | None = None) -> dict[str, torch.Tensor]:
    """`input_ids` and `attention_mask` (and `labels`, -100 on padding) of a padded batch."""
    batch = {"input_ids": pad(ids, pad_id, side),
             "attention_mask": pad([[1] * len(r) for r in ids], 0, side)}
    if labels is not None:
        batch["labels"] = pad(labels, -100, side)
    return batch


def input_device(model) -> torch.device:
    """Where a batch must go: the input embedding's device (under a device map, the first module's;
    on one GPU accelerate installs no hooks that would move inputs for us)."""
    return model.get_input_embeddings().weight.device


def to_model(batch, model):
    """A tensor, or a dict's tensors, on the model's input device: the one way a batch reaches a model."""
    device = input_device(model)
    if isinstance(batch, dict):
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    return batch.to(device)


def shuffled_batches(rows: torch.Tensor, batch_size: int, gen: torch.Generator):
    """Endless full batches of `rows`, reshuffled every pass (an SAE trainer's data iterator)."""
    while True:
        perm = torch.randperm(len(rows), generator=gen)
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            yield rows[perm[i:i + batch_size]]
