"""The per-task hooks of the training loop (imports torch); see `training.tasks`.

Every hook has the same methods, called by `loop._Trainer`:
- `train_step(model, x, y)` -> `(per-sample losses with grad, float64 sums [3])`;
- `evaluate(module, x, y)` -> `(outputs, per-sample losses)` of one chunk, no grad;
- `train_metrics(totals)`, `epoch_metrics(split, out, x, y, per_sample)`,
  `final_metrics(split, out, x, y, per_sample, module)` -> `(metrics, confusion | None)`;
- `output_shape`: one sample's output shape;
- `extra_meta()`: entries for the artifact's `meta.json`.
"""
from __future__ import annotations

import torch

from trainserve.training import metrics as M
from trainserve.training.gan_task import GenerationTask
from trainserve.training.seq_tasks import is_token_task, make_token_task
from trainserve.training.tasks import RECONSTRUCTION

_CHUNK = 4096  # samples per forward pass of the extra final evaluations
# A code value counts as off when |z| is at most this fraction of its sample's largest |z|.
CODE_OFF_FRACTION = 0.1


def code_sparsity(codes: torch.Tensor) -> float:
    """The fraction of the values of `codes` `(N, latent_dim)` that are off: |z| <=
    CODE_OFF_FRACTION * the largest |z| of the same sample (an all-zero code is all off).
    Relative to each sample's own largest value, so scaling the code does not change it."""
    mag = codes.detach().abs().double()
    if mag.numel() == 0:
        return 0.0
    off = mag <= CODE_OFF_FRACTION * mag.amax(dim=1, keepdim=True)
    return float(off.double().mean())


class SupervisedTask:
    """Classification or regression: the model's outputs against the targets."""

    def __init__(self, info, loss_fn, top_k: int | None = None, epoch_clinical: bool = False):
        self.info, self.loss_fn, self.top_k = info, loss_fn, top_k
        self.classification = info.task == "classification"
        # `training.epoch_clinical_metrics`: the clinical metrics every epoch as well.
        self.epoch_clinical = epoch_clinical and self.classification
        self.output_shape = (info.output_dim,)  # of one sample's output

    def train_step(self, model, x, y):
        out = model(x)
        per_sample = self.loss_fn(out, y)
        return per_sample, M.train_sums(out.detach(), y, per_sample.detach().sum(),
                                        self.classification)

    def evaluate(self, module, x, y):
        out = module(x)
        return out, self.loss_fn(out, y)

    def train_metrics(self, totals):
        return M.train_metrics(totals, self.classification)

    def epoch_metrics(self, split, out, x, y, per_sample):
        metrics = M.epoch_metrics(split, out, y, per_sample, self.classification)
        if self.epoch_clinical:
            metrics |= M.epoch_clinical(split, out, y, self.info.num_classes,
                                        self.info.class_names, self.top_k)
        return metrics

    def final_metrics(self, split, out, x, y, per_sample, module):
        classes = self.info.num_classes if self.classification else 0
        return M.final_metrics(split, out, y, per_sample, classes, self.info.class_names,
                               self.top_k)

    def extra_meta(self):
        return {}


class ReconstructionTask:
    """Autoencoders: reconstruct the input; the loss adds the model's per-sample penalty."""

    def __init__(self, spec, info, loss_fn):
        self.info, self.loss_fn = info, loss_fn
        self.ae = spec.model.autoencoder
        self.seed = spec.training.seed
        self.output_shape = tuple(info.input_shape)  # of one sample's output

    def _recon_mse(self, out, x):
        return self.loss_fn(out.flatten(1), x.flatten(1))  # mean over the input values

    def _loss(self, model, x):
        out, penalty = model(x, return_penalty=True)
        recon = self._recon_mse(out, x)
        return out, recon + penalty, recon

    def train_step(self, model, x, y):
        _, per_sample, recon = self._loss(model, x)
        count = torch.tensor(len(x), dtype=torch.float64, device=x.device)
        sums = torch.stack([per_sample.detach().sum().double(), count,
                            recon.detach().sum().double()])
        return per_sample, sums

    def evaluate(self, module, x, y):
        out, per_sample, _ = self._loss(module, x)
        return out, per_sample

    def train_metrics(self, totals):
        loss, n, recon = totals
        return {"train_loss": loss / n, "train_recon_mse": recon / n}

    def epoch_metrics(self, split, out, x, y, per_sample):
        return {f"{split}_loss": float(per_sample.double().mean()),
                f"{split}_recon_mse": float(self._recon_mse(out, x).double().mean())}

    def final_metrics(self, split, out, x, y, per_sample, module):
        metrics = self.epoch_metrics(split, out, x, y, per_sample)
        if self.ae.kind == "denoising":
            metrics[f"{split}_denoise_mse"] = self.denoise_mse(module, x)
        metrics[f"{split}_code_sparsity"] = code_sparsity(self.codes(module, x))
        return metrics, None

    @torch.no_grad()
    def codes(self, module, x):
        """The latent codes `(N, latent_dim)` of `x` (a VAE's: the posterior means)."""
        module.eval()
        chunks = [module.encode(x[s:s + _CHUNK]) for s in range(0, len(x), _CHUNK)]
        return torch.cat(chunks) if chunks else x.new_zeros(0, self.ae.latent_dim)

    @torch.no_grad()
    def denoise_mse(self, module, x):
        """Mean per-sample MSE of reconstructing `x` plus seeded Gaussian noise (the spec's
        std) against the clean `x`; every rank computes the same value on the whole split."""
        from trainserve.training.seeds import derive_seed
        gen = torch.Generator().manual_seed(derive_seed(self.seed, 4))
        total = 0.0
        module.eval()
        for s in range(0, len(x), _CHUNK):
            clean = x[s:s + _CHUNK]
            noisy = clean + self.ae.noise * torch.randn(clean.shape, generator=gen).to(x.device)
            total += float(self._recon_mse(module(noisy), clean).double().sum())
        return total / max(len(x), 1)

    def extra_meta(self):
        return {"variational": self.ae.kind == "variational", "latent_dim": self.ae.latent_dim,
                "autoencoder_kind": self.ae.kind}


def make_task(spec, info, loss_fn):
    """The task hook of a checked `spec` whose (task-)`info` is `info`, `loss_fn` its loss."""
    if is_token_task(info):  # seq2seq, language_model (training.seq_tasks)
        return make_token_task(spec, info)
    if info.task == "generation":  # GANs (training.gan_task)
        return GenerationTask(spec, info, loss_fn)
    if info.task == RECONSTRUCTION:
        return ReconstructionTask(spec, info, loss_fn)
    top_k = spec.training.top_k if spec.training.HasField("top_k") else None
    return SupervisedTask(info, loss_fn, top_k, spec.training.epoch_clinical_metrics)
