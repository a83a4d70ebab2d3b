"""Masked-language-model pre-training (task "masked_lm", `model.bert` on `corpus_mlm`): the
loop hooks (imports torch); the task is routed here by `training.seq_tasks`.

Masking (Devlin et al. 2019): in every sequence each non-special token is chosen with
`model.bert.mask_probability` (default 0.15; at least one per sequence); of the chosen, 80%
become `[MASK]`, 10% a random corpus character, 10% stay as they are. The loss is the
cross-entropy of the original token at the chosen positions only, averaged per sequence.
Training draws fresh masks every step (the epoch's seeded generator); validation and test
use masks from a fixed generator, the same in every epoch and every job, so their numbers
compare across epochs and runs.

Metrics: `train_loss`, `train_mlm_accuracy` (the mean over sequences of the share of their
chosen tokens predicted right), `<split>_loss`, `<split>_mlm_accuracy` (chosen tokens
predicted right over all chosen tokens) and `<split>_perplexity` (exp of the cross-entropy
per chosen token) for val every epoch and for test at the end.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from trainserve.training.datasets.tokenizer import MASK, SPECIALS

MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # of the chosen tokens; the rest stay unchanged
EVAL_MASK_SEED = 20240611  # fixed: every job's val/test masks are the same


def mask_tokens(ids: torch.Tensor, probability: float, vocab: int,
                generator: torch.Generator | None = None):
    """`(inputs, chosen)`: `ids` `(N, T)` with the 80/10/10 rule applied at the `chosen`
    positions (bool `(N, T)`). Random draws come from `generator` (a CPU one) or, when None,
    the global generator of `ids`' device."""
    def rand(*shape):
        if generator is None:
            return torch.rand(shape, device=ids.device)
        return torch.rand(shape, generator=generator).to(ids.device)

    maskable = ids >= len(SPECIALS)
    chosen = (rand(*ids.shape) < probability) & maskable
    # A sequence with no chosen token would teach nothing: choose one of its tokens.
    empty = ~chosen.any(dim=1) & maskable.any(dim=1)
    if bool(empty.any()):
        pick = (rand(*ids.shape) * maskable).argmax(dim=1)
        chosen[empty, pick[empty]] = True
    r = rand(*ids.shape)
    inputs = ids.clone()
    inputs[chosen & (r < MASK_SHARE)] = MASK
    swap = chosen & (r >= MASK_SHARE) & (r < MASK_SHARE + RANDOM_SHARE)
    random_ids = (rand(*ids.shape) * (vocab - len(SPECIALS))).long() + len(SPECIALS)
    inputs[swap] = random_ids[swap]
    return inputs, chosen


class MaskedLMTask:
    def __init__(self, spec, info):
        self.spec, self.info = spec, info
        self.probability = spec.model.bert.mask_probability
        self.vocab = len(info.class_names)
        self.output_shape = (info.num_targets,)

    def _masked(self, model, y, generator=None):
        ids = y.long()
        inputs, chosen = mask_tokens(ids, self.probability, self.vocab, generator)
        logits = model(inputs)
        ce = F.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
        count = chosen.sum(dim=1).clamp(min=1)
        per_sample = (ce * chosen).sum(dim=1) / count
        return per_sample, logits.detach().argmax(-1), chosen, count

    def train_step(self, model, x, y):
        per_sample, pred, chosen, count = self._masked(model, y)
        right = ((pred == y.long()) & chosen).sum(dim=1) / count
        sums = torch.stack([per_sample.detach().sum().double(),
                            torch.tensor(float(len(y)), dtype=torch.float64, device=y.device),
                            right.sum().double()])
        return per_sample, sums

    def evaluate(self, module, x, y):
        gen = torch.Generator().manual_seed(EVAL_MASK_SEED)
        per_sample, pred, chosen, _ = self._masked(module, y, gen)
        return torch.where(chosen, pred, torch.full_like(pred, -1)), per_sample

    def train_metrics(self, totals):
        loss, n, right = totals
        return {"train_loss": loss / n, "train_mlm_accuracy": right / n}

    def epoch_metrics(self, split, out, x, y, per_sample):
        chosen = out >= 0
        count = chosen.sum(dim=1).double()
        tokens = max(float(count.sum()), 1.0)
        right = float(((out.long() == y.long()) & chosen).sum())
        token_ce = float((per_sample.double() * count).sum()) / tokens
        return {f"{split}_loss": float(per_sample.double().mean()),
                f"{split}_mlm_accuracy": right / tokens,
                f"{split}_perplexity": math.exp(min(token_ce, 700.0))}

    def final_metrics(self, split, out, x, y, per_sample, module):
        return self.epoch_metrics(split, out, x, y, per_sample), None

    def extra_meta(self):
        return {"tokenizer": "char", "mask_probability": float(self.probability)}
