"""Training options for small and large runs alike: the loss computed at the labelled positions only, and the
vision tower trained where it is randomly initialised.

**Loss at labelled positions** (``optim.loss_at_labels_only``). The language-model head (hidden -> 151,936
vocabulary logits) is the most expensive layer of a small Qwen2.5-VL and a large share of a big one's
activation memory: a batch of 4 x 400 tokens makes 243M float logits (0.97 GB in float32) of which only the
~40 answer positions are scored. With the option, the Trainer passes the model a boolean
``logits_to_keep`` mask (transformers' ``slice_logits_to_keep``: ``hidden_states[mask]``), so the head is
applied to the hidden states that predict a labelled token and nothing else; :func:`labelled_token_loss`
then scores those (N, vocab) logits. The loss is the same sum over answer tokens divided by the global
count of answer tokens (``num_items_in_batch``) as the full-logits path, to float tolerance
(tests/test_train_options.py).

**Vision tower** (``model.random_init`` / ``model.freeze_vision``). A checkpoint trained from scratch (the
tiny Qwen2.5-VL of the tests, the ``scratch_cpu.yaml`` recipe) has a random vision tower; frozen, it never
learns to see. ``freeze_vision`` unset means "frozen unless ``random_init``"; a random tower that is frozen
anyway (``freeze_vision: true``, or LoRA, whose target modules are the language model's) is warned about.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from bopask_vlm.train.config import TrainConfig

log = logging.getLogger(__name__)


class FrozenRandomVisionWarning(UserWarning):
    """A randomly initialised vision tower is frozen: the model cannot learn to see."""


def vision_frozen(cfg: TrainConfig) -> bool:
    """Whether full fine-tuning keeps the vision tower frozen: ``model.freeze_vision`` when set, else frozen
    unless the checkpoint is randomly initialised (``model.random_init``)."""
    fv = cfg.model.freeze_vision
    return (not cfg.model.random_init) if fv is None else bool(fv)


def warn_if_random_vision_frozen(cfg: TrainConfig) -> bool:
    """Warn (:class:`FrozenRandomVisionWarning`, and the log) when ``model.random_init`` is set but the vision
    tower will not train; returns whether it warned."""
    if not cfg.model.random_init:
        return False
    why = ("lora.enabled (LoRA adapts the language model only)" if cfg.lora.enabled
           else "model.freeze_vision is true" if vision_frozen(cfg) else None)
    if why is None:
        return False
    msg = (f"model.random_init: the vision tower of {cfg.model.path} is randomly initialised but stays frozen "
           f"({why}): the model cannot learn to see; set model.freeze_vision: false and lora.enabled: false")
    log.warning(msg)
    warnings.warn(msg, FrozenRandomVisionWarning, stacklevel=2)
    return True


def labelled_positions(labels: Any) -> Any:
    """Boolean (batch, seq) mask of the positions whose next token is labelled (``labels[:, t + 1] != -100``):
    the hidden states whose logits the loss reads. Row-major order of the mask's True entries is the order of
    ``labels[:, 1:][labels[:, 1:] != -100]``."""
    import torch

    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    return keep


def labelled_token_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Next-token cross-entropy summed over the labelled tokens, divided by ``num_items_in_batch`` (the
    Trainer's count of labelled tokens over the whole global batch; this batch's count when None).

    ``outputs.logits`` is either the full (batch, seq, vocab) tensor or the (N, vocab) logits of the
    :func:`labelled_positions` (``logits_to_keep`` given a boolean mask); both give the same loss."""
    import torch.nn.functional as F

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
    shift_labels = labels[..., 1:].to(logits.device)
    if logits.dim() == 2:  # already the labelled positions, in row-major order
        targets = shift_labels[shift_labels != -100]
        if logits.shape[0] != targets.numel():
            raise ValueError(f"{logits.shape[0]} selected logits for {targets.numel()} labelled tokens")
        total = F.cross_entropy(logits.float(), targets, reduction="sum")
    else:
        total = F.cross_entropy(logits[..., :-1, :].float().reshape(-1, logits.shape[-1]),
                                shift_labels.reshape(-1), ignore_index=-100, reduction="sum")
    if num_items_in_batch is None:
        num_items_in_batch = (shift_labels != -100).sum()
    return total / num_items_in_batch


def trainer_class(base: Any = None) -> Any:
    """A ``transformers.Trainer`` subclass whose ``compute_loss`` adds the :func:`labelled_positions` mask as
    ``logits_to_keep`` when ``loss_at_labels_only`` is set on it (use with ``compute_loss_func`` =
    :func:`labelled_token_loss`)."""
    if base is None:
        from transformers import Trainer as base

    class LabelledLogitsTrainer(base):  # type: ignore[misc, valid-type]
        loss_at_labels_only: bool = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.loss_at_labels_only and inputs.get("labels") is not None:
                inputs = {**inputs, "logits_to_keep": labelled_positions(inputs["labels"])}
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return LabelledLogitsTrainer
