"""GAN: an MLP generator and an MLP discriminator over the flattened input (`GANSpec`); the
generator may normalize its hidden layers over the batch (`generator_batch_norm`, which keeps
it from collapsing onto a few digits in examples/gan_digits.yaml) and squash its output
(`output_activation`, e.g. sigmoid for minmax-normalized inputs).

Torch-free at import, like the rest of the zoo. Besides the architecture entry this module
holds the job-wide rules of a GAN (`check_gan_job`, called by `validate.check_spec` once the
task is known to be "generation") and registers the "non_saturating" loss, the only one a GAN
takes: binary cross-entropy with logits against real (1) / fake (0) labels, per sample. The
generator is trained on the non-saturating form (its fakes labelled real, i.e.
-log D(G(z))); the alternation itself lives in `training.gan_task`.

What a GAN cannot take, and why (each refused at the field's path, with the fix):
- loss other than "non_saturating", class_weights, huber_delta: the adversarial BCE is the GAN;
- optimizer "gd" / "perceptron": one step per batch is what alternation needs;
- scheduler / warm-up: they would move the generator's lr but not the discriminator's;
- L1/L2 (`training.regularization`): the loop's penalty would step the discriminator with the
  generator's optimizer (use `optimizer.weight_decay`, which each optimizer applies to its own);
- early stopping and cross-validation: the adversarial losses do not measure sample quality;
- `scaling.num_workers` > 1: the discriminator's steps are taken outside DDP's wrapper, so
  its gradients would not be averaged across workers (the loop refuses it too).
"""
from __future__ import annotations

from trainserve.training.activations import ACTIVATIONS, NO_ACTIVATION
from trainserve.training.checks import check_choice, check_range, check_widths, fail
from trainserve.training.losses import Loss, register_loss
from trainserve.training.zoo import Architecture, check_batch_norm_batch, register_architecture
from trainserve.training.zoo.mlp import MAX_LAYERS, MAX_WIDTH

GENERATION = "generation"
LOSS = "non_saturating"  # the adversarial BCE; the generator on -log D(G(z))
DEFAULT_HIDDEN = (64, 64)
DEFAULT_LATENT_DIM = 8
DEFAULT_DISCRIMINATOR_STEPS = 1
MAX_DISCRIMINATOR_STEPS = 10
DEFAULT_LR_MULTIPLIER = 1.0
DEFAULT_ACTIVATION = "relu"
DEFAULT_DISCRIMINATOR_ACTIVATION = "leaky_relu"
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")  # one step per batch
# Why a GAN refuses DDP, and the fix (validation and the loop both say it).
ONE_WORKER = ("a GAN trains on one worker only: its discriminator is stepped by its own "
              "optimizer outside DDP's wrapper, so the discriminator's gradients would not be "
              "averaged and the workers' discriminators would drift apart; set "
              "spec.scaling.num_workers to 1 (the example GANs train in seconds on one worker)")


def apply_defaults(msg) -> None:
    """Fill the unset fields of a `GANSpec` in place."""
    if not msg.generator_hidden:
        msg.generator_hidden.extend(DEFAULT_HIDDEN)
    if not msg.discriminator_hidden:
        msg.discriminator_hidden.extend(DEFAULT_HIDDEN)
    if not msg.HasField("latent_dim"):
        msg.latent_dim = DEFAULT_LATENT_DIM
    if not msg.HasField("discriminator_steps"):
        msg.discriminator_steps = DEFAULT_DISCRIMINATOR_STEPS
    if not msg.HasField("discriminator_lr_multiplier"):
        msg.discriminator_lr_multiplier = DEFAULT_LR_MULTIPLIER
    msg.activation = msg.activation or DEFAULT_ACTIVATION
    msg.discriminator_activation = msg.discriminator_activation or \
        DEFAULT_DISCRIMINATOR_ACTIVATION
    msg.output_activation = msg.output_activation or NO_ACTIVATION


def check(msg, path: str, info, spec) -> None:
    """Widths, latent width, discriminator steps and lr multiplier, activations, and the
    batch size batch norm needs."""
    for name in ("generator_hidden", "discriminator_hidden"):
        check_widths(getattr(msg, name), f"{path}.{name}", most_layers=MAX_LAYERS,
                     most_width=MAX_WIDTH)
    if not 0 < msg.latent_dim <= MAX_WIDTH:
        fail(f"{path}.latent_dim", f"must be in [1, {MAX_WIDTH}], got {msg.latent_dim}")
    if not 1 <= msg.discriminator_steps <= MAX_DISCRIMINATOR_STEPS:
        fail(f"{path}.discriminator_steps", f"must be in [1, {MAX_DISCRIMINATOR_STEPS}], got "
                                            f"{msg.discriminator_steps}")
    check_range(msg.discriminator_lr_multiplier, f"{path}.discriminator_lr_multiplier",
                low=0.0, high=1e6, low_open=True)
    check_choice(msg.activation, ACTIVATIONS, f"{path}.activation", "activation")
    check_choice(msg.discriminator_activation, ACTIVATIONS, f"{path}.discriminator_activation",
                 "activation")
    check_choice(msg.output_activation, [NO_ACTIVATION, *ACTIVATIONS.names()],
                 f"{path}.output_activation", "output activation")
    check_batch_norm_batch(spec, msg.generator_batch_norm)


def build(msg, info):
    """The GAN module for a checked `GANSpec` and the dataset's `info`."""
    from trainserve.training.zoo.gan_net import GAN
    return GAN(msg, info.input_shape)


def is_gan(spec) -> bool:
    return spec.HasField("model") and spec.model.WhichOneof("arch") == "gan"


def check_gan_job(spec) -> None:
    """The job-wide fields a GAN cannot take (see the module docstring); raises
    `InvalidArgument` at the field's path. Runs before the loss and optimizer defaults."""
    why = "a GAN trains on the adversarial loss alone"
    if spec.loss.name not in ("", LOSS):
        fail("spec.loss.name", f"{why}, not {spec.loss.name}; set spec.loss.name to {LOSS!r} "
                               f"or leave it unset")
    if spec.loss.class_weights:
        fail("spec.loss.class_weights", f"{why} and ignores the dataset's classes; remove "
                                        f"class_weights")
    if spec.loss.HasField("huber_delta"):
        fail("spec.loss.huber_delta", f"{why}; remove huber_delta")
    opt = spec.optimizer
    if opt.name and opt.name not in OPTIMIZERS:
        fail("spec.optimizer.name", f"a GAN alternates one discriminator and one generator step "
                                    f"per batch; optimizer {opt.name!r} cannot: use one of "
                                    f"{', '.join(OPTIMIZERS)}")
    if opt.scheduler.name not in ("", "none"):
        fail("spec.optimizer.scheduler.name", "a GAN's discriminator would not follow the "
                                              "schedule; remove the scheduler")
    if opt.warmup_epochs:
        fail("spec.optimizer.warmup_epochs", "a GAN's discriminator would not follow the "
                                             "warm-up; remove warmup_epochs")
    reg = spec.training.regularization
    for name in ("l1", "l2"):
        if getattr(reg, name):
            fail(f"spec.training.regularization.{name}",
                 "the L1/L2 penalty would reach the discriminator through the generator's "
                 "optimizer; remove it (spec.optimizer.weight_decay works for both networks)")
    if spec.training.HasField("early_stopping"):
        fail("spec.training.early_stopping", "the adversarial losses do not measure sample "
                                             "quality, so there is no metric to stop on; "
                                             "remove early_stopping and set the epochs")
    if spec.split.folds >= 2:
        fail("spec.split.folds", "cross-validation compares models on a held-out loss, which "
                                 "a GAN's losses are not; remove folds")
    if spec.scaling.num_workers > 1:
        fail("spec.scaling.num_workers", ONE_WORKER)


def _adversarial(spec, info):
    def fn(logits, target):
        import torch.nn.functional as F
        # logits (N, 1), target (N,) of 1.0 (real) / 0.0 (fake): one loss per sample.
        return F.binary_cross_entropy_with_logits(logits.reshape(len(logits)), target,
                                                  reduction="none")
    return fn


register_loss(LOSS, Loss(frozenset({GENERATION}), _adversarial))
register_architecture("gan", Architecture(apply_defaults, check, build))
