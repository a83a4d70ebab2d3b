"""Learning tasks: what the training loop computes on a batch, and which metrics it reports.

The loop (`training.loop`) is one code path; a task decides how a batch's loss, its running sums
and the split metrics are computed:

- supervised (the dataset's own task, classification or regression): `model(x)` against the
  targets with the spec's loss; metrics from `training.metrics`.
- reconstruction (any dataset trained by an autoencoder; its targets are ignored): the loss per
  sample is the MSE between `model(x)` and the (clean) input, plus the autoencoder kind's
  penalty (sparsity, or beta * KL for the VAE: the negative ELBO). Per epoch `train_loss`,
  `train_recon_mse`, `val_loss`, `val_recon_mse`; at the end `test_loss`, `test_recon_mse`
  (mean per-sample MSE on the normalized inputs) and, for a denoising autoencoder,
  `test_denoise_mse` (reconstructions of the test inputs with the spec's noise added, against
  the clean inputs; the noise is seeded by the job's seed); every kind also reports
  `test_code_sparsity`, the fraction of the test codes' values that are off (|z| at most a
  tenth of the largest |z| of the same sample; `task_hooks.code_sparsity`).

This module is torch-free (validation uses `task_info`); the hooks themselves, built by
`task_hooks.make_task`, import torch.
"""
from __future__ import annotations

import dataclasses

RECONSTRUCTION = "reconstruction"
# Architectures that turn any dataset into the reconstruction task.
RECONSTRUCTION_ARCHS = ("autoencoder",)


def is_reconstruction(spec) -> bool:
    """Whether `spec` trains an autoencoder (the reconstruction task)."""
    return spec.HasField("model") and spec.model.WhichOneof("arch") in RECONSTRUCTION_ARCHS


def task_info(spec, info):
    """The `DatasetInfo` the model and the loop see: the dataset's own, or for an autoencoder
    the same inputs with task "reconstruction" (no classes, outputs = the input values)."""
    if spec.HasField("model") and spec.model.WhichOneof("arch") == "gan":  # training.gan_task
        return dataclasses.replace(info, task="generation", num_classes=0, class_names=(),
                                   num_targets=1)
    if not is_reconstruction(spec):
        return info
    return dataclasses.replace(info, task=RECONSTRUCTION, num_classes=0, class_names=(),
                               num_targets=1)
