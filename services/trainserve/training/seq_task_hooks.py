"""The loop hooks of the token tasks (imports torch); see `training.seq_tasks` for the metrics."""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

BIGRAM_K = (0.01, 0.03, 0.1, 0.3, 1.0)


def _token_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample mean over positions of the cross-entropy, logits `(N, T, V)`, y `(N, T)`."""
    ce = F.cross_entropy(logits.transpose(1, 2), y.long(), reduction="none")
    return ce.mean(dim=1)


def _sums(per_sample, correct, device):
    return torch.stack([per_sample.detach().sum().double(),
                        torch.tensor(float(len(per_sample)), dtype=torch.float64, device=device),
                        correct.double()])


class _TokenTask:
    def __init__(self, spec, info):
        self.spec, self.info = spec, info
        self.output_shape = (info.num_targets,)

    def train_metrics(self, totals):
        loss, n, correct = totals
        return {"train_loss": loss / n,
                "train_token_accuracy": correct / (n * self.info.num_targets)}

    def final_metrics(self, split, out, x, y, per_sample, module):
        return self.epoch_metrics(split, out, x, y, per_sample), None


class Seq2SeqTask(_TokenTask):
    def train_step(self, model, x, y):
        logits = model(x, y)
        per_sample = _token_ce(logits, y)
        correct = (logits.detach().argmax(-1) == y).sum()
        return per_sample, _sums(per_sample, correct, x.device)

    def evaluate(self, module, x, y):
        per_sample = _token_ce(module(x, y), y)
        return module(x), per_sample  # greedy tokens (N, T)

    def epoch_metrics(self, split, out, x, y, per_sample):
        right = out.long() == y.long()
        return {f"{split}_loss": float(per_sample.double().mean()),
                f"{split}_token_accuracy": float(right.double().mean()),
                f"{split}_exact_match": float(right.all(dim=1).double().mean())}

    def extra_meta(self):
        m = self.spec.model.seq2seq
        return {"attention": bool(m.attention), "output_length": self.info.num_targets}


class LanguageModelTask(_TokenTask):
    def train_step(self, model, x, y):
        logits = model(x)
        per_sample = _token_ce(logits, y)
        correct = (logits.detach().argmax(-1) == y).sum()
        return per_sample, _sums(per_sample, correct, x.device)

    def evaluate(self, module, x, y):
        logits = module(x)
        return logits.argmax(-1), _token_ce(logits, y)

    def epoch_metrics(self, split, out, x, y, per_sample):
        return {f"{split}_loss": float(per_sample.double().mean()),
                f"{split}_token_accuracy": float((out.long() == y.long()).double().mean())}

    def final_metrics(self, split, out, x, y, per_sample, module):
        metrics = self.epoch_metrics(split, out, x, y, per_sample)
        from trainserve.training.data import prepare_data
        data = prepare_data(self.spec)  # the same seeded split the loop trained on
        if len(data.x_val):
            dev = next(module.parameters()).device
            with torch.no_grad():
                module.eval()
                xv = torch.from_numpy(data.x_val).to(dev)
                yv = torch.from_numpy(data.y_val).to(dev)
                metrics["val_loss"] = float(torch.cat([
                    _token_ce(module(xv[s:s + 1024]), yv[s:s + 1024])
                    for s in range(0, len(xv), 1024)]).double().mean())
        metrics.update(bigram_losses(data, len(self.info.class_names)))
        return metrics, None

    def extra_meta(self):
        return {"context_length": int(self.spec.model.gpt.context_length)}


def bigram_losses(data, vocab: int) -> dict[str, float]:
    """Cross-entropy (nats per character) of an add-k bigram model counted on the training
    split, k picked on the validation split; `bigram_val_loss`, `bigram_test_loss`."""
    counts = np.zeros((vocab, vocab))
    np.add.at(counts, (data.x_train.astype(np.int64).ravel(), data.y_train.ravel()), 1)

    def ce(x, y, k):
        p = (counts + k) / (counts + k).sum(1, keepdims=True)
        return float(-np.log(p[x.astype(np.int64).ravel(), y.ravel()]).mean())

    if len(data.x_val):
        k = min(BIGRAM_K, key=lambda k: ce(data.x_val, data.y_val, k))
    else:
        k = 1.0
    out = {"bigram_test_loss": ce(data.x_test, data.y_test, k)}
    if len(data.x_val):
        out["bigram_val_loss"] = ce(data.x_val, data.y_val, k)
    return out
