"""The generation task (GANs, `model.gan`): the loop's hook (see `training.task_hooks`).

One training step, on a real batch x of n samples:
1. `discriminator_steps` times: n fresh fakes G(z) (no generator gradient), discriminator loss
   d_loss = mean BCE(D(x), 1) + mean BCE(D(G(z)), 0), stepped by the task's own optimizer (the
   spec's OptimizerSpec, lr * `discriminator_lr_multiplier`, the same grad_clip);
2. n fresh fakes, generator loss per sample BCE(D(G(z)), 1) = -log D(G(z)) (non-saturating),
   computed through a detached copy of the discriminator's parameters, so the loop's backward
   reaches only the generator and the loop's optimizer steps only it.
z is drawn from the global RNG, which the loop seeds per epoch.

Metrics, per epoch: `g_loss` and `d_loss` (means over the epoch's batches, per sample; d_loss
from the last discriminator step of each batch), `train_loss` = g_loss; with a validation
split `val_loss` = `val_d_loss`: the discriminator's loss on the real val samples against as
many fakes (z seeded by the job's seed). At the end the same on the final split
(`test_loss`, `test_d_loss`) and, on `rings`, the mode metrics of 1000 generated samples
(z seeded by the job's seed), in the normalized space the nets see:
- the mode centres are the means of the final split's real samples of each mode (its class)
  and sigma the pooled per-coordinate standard deviation of those samples around their
  centres (the dataset's noise, in normalized units);
- a sample is "high quality" when within 3 sigma (Euclidean) of its nearest centre (98.9%
  of the real samples of a 2-D Gaussian mode are);
  `high_quality_fraction` is the fraction of the 1000 that are;
- a mode is covered when at least 1000 / (8 * 4) of the samples (i.e. >= 32, a quarter of a
  fair share) are high-quality samples nearest to it; `modes_covered` counts them (0..8).
With `noise` 0 the modes are points (sigma 0), so nothing counts: give rings some noise.

The discriminator's optimizer state is not checkpointed: a resumed GAN restarts it.
"""
from __future__ import annotations

import torch

from trainserve.core import errors
from trainserve.training.zoo.gan import ONE_WORKER

NUM_EVAL_SAMPLES = 1000
COVERAGE_SHARE = 1 / 4        # of a fair share (NUM_EVAL_SAMPLES / modes) to cover a mode
QUALITY_SIGMAS = 3.0
MODE_DATASETS = ("rings",)    # datasets whose classes are Gaussian modes


def mode_metrics(samples: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """`modes_covered` and `high_quality_fraction` of `samples` (N, 2) against the real `x`
    (M, 2) with mode labels `y` (M,), as the module docstring defines them."""
    samples, x = samples.double().flatten(1), x.double().flatten(1)
    modes = sorted(int(m) for m in torch.unique(y))
    centres = torch.stack([x[y == m].mean(0) for m in modes])
    resid = x - centres[torch.searchsorted(torch.tensor(modes), y.cpu()).to(x.device)]
    sigma = float(resid.pow(2).mean().sqrt())
    dist = torch.cdist(samples, centres)
    nearest_d, nearest = dist.min(1)
    good = nearest_d <= QUALITY_SIGMAS * sigma
    counts = torch.bincount(nearest[good], minlength=len(modes))
    need = len(samples) * COVERAGE_SHARE / len(modes)
    return {"modes_covered": float((counts >= need).sum()),
            "high_quality_fraction": float(good.double().mean())}


class GenerationTask:
    """GANs: alternate discriminator and generator steps; metrics as the module says."""

    def __init__(self, spec, info, loss_fn):
        self.spec, self.info, self.loss_fn = spec, info, loss_fn
        self.gan_spec = spec.model.gan
        self.seed = spec.training.seed
        self.output_shape = (1,)  # evaluate's output: the discriminator's logit
        self.d_optimizer = None

    def _d_optimizer(self, gan):
        if self.d_optimizer is None:
            from trainserve.training.optimizers import build_optimizer
            opt = type(self.spec.optimizer)()
            opt.CopyFrom(self.spec.optimizer)
            opt.lr = opt.lr * self.gan_spec.discriminator_lr_multiplier
            self.d_optimizer = build_optimizer(gan.discriminator.parameters(), opt)
        return self.d_optimizer

    def _labels(self, n, value, device):
        return torch.full((n,), value, dtype=torch.float32, device=device)

    def train_step(self, model, x, y):
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            raise errors.TrainingError(ONE_WORKER)
        gan, n = model, len(x)
        ones, zeros = self._labels(n, 1.0, x.device), self._labels(n, 0.0, x.device)
        d_opt = self._d_optimizer(gan)
        for _ in range(self.gan_spec.discriminator_steps):
            with torch.no_grad():
                fake = gan.sample(n)
            d_loss = self.loss_fn(gan(x), ones).mean() + self.loss_fn(gan(fake), zeros).mean()
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            if self.spec.optimizer.grad_clip:
                torch.nn.utils.clip_grad_norm_(gan.discriminator.parameters(),
                                               self.spec.optimizer.grad_clip)
            d_opt.step()
        frozen = {k: v.detach() for k, v in gan.discriminator.named_parameters()}
        fake = gan.sample(n)
        logits = torch.func.functional_call(gan.discriminator, frozen, (fake.flatten(1),))
        g_loss = self.loss_fn(logits, ones)
        sums = torch.stack([g_loss.detach().sum().double(),
                            torch.tensor(float(n), dtype=torch.float64, device=x.device),
                            d_loss.detach().double() * n])
        return g_loss, sums

    def _fakes(self, module, n, device):
        from trainserve.training.seeds import derive_seed
        gen = torch.Generator().manual_seed(derive_seed(self.seed, 5))
        return module.sample(n, gen).to(device)

    def evaluate(self, module, x, y):
        n = len(x)
        real = module(x)
        fake = module(self._fakes(module, n, x.device))
        per_sample = self.loss_fn(real, self._labels(n, 1.0, x.device)) + \
            self.loss_fn(fake, self._labels(n, 0.0, x.device))
        return real, per_sample

    def train_metrics(self, totals):
        g, n, d = totals
        return {"train_loss": g / n, "g_loss": g / n, "d_loss": d / n}

    def epoch_metrics(self, split, out, x, y, per_sample):
        loss = float(per_sample.double().mean())
        return {f"{split}_loss": loss, f"{split}_d_loss": loss}

    @torch.no_grad()
    def final_metrics(self, split, out, x, y, per_sample, module):
        metrics = self.epoch_metrics(split, out, x, y, per_sample)
        if self.info.name in MODE_DATASETS and len(x):
            from trainserve.training.seeds import derive_seed
            module.eval()
            gen = torch.Generator().manual_seed(derive_seed(self.seed, 6))
            samples = module.sample(NUM_EVAL_SAMPLES, gen)
            metrics |= mode_metrics(samples, x, y)
        return metrics, None

    def extra_meta(self):
        return {"latent_dim": int(self.gan_spec.latent_dim)}
