"""`check_spec`: apply the documented defaults to a `JobSpec` and validate its training fields.

Torch-free, so the API can call it on submission. Every error is an `errors.InvalidArgument`
whose `field` is the full path (`spec.training.epochs`, `spec.model.mlp.hidden[1]`, ...).
`name`, `scaling`, `deploy`, `description` and `labels` are left to the caller (scaling is
only read, to refuse the perceptron rule on several workers).

Defaults applied here (so the stored spec shows the effective values): normalize standard,
test_fraction 0.2, val_fraction 0.1 (0 with folds >= 2), stratify for classification,
epochs 10, batch_size 32, checkpoint_every_s 5, early stopping (when present) metric
val_loss / mode by metric / patience 5 / restore_best true, loss cross_entropy | mse
(regression, and autoencoders, whose task is reconstruction whatever the dataset's;
perceptron with the perceptron optimizer), huber_delta 1.0 (huber only), optimizer adam with
its default lr, scheduler "none" (step: step_size 10, gamma 0.1; plateau: gamma 0.1,
patience 5). Unset numeric fields whose default is 0 (folds, warmup_epochs, grad_clip, l1,
l2, augmentation) stay 0.
"""
from __future__ import annotations

import math

from trainserve.core.pb import spec_pb2
from trainserve.training import datasets as _datasets, zoo as _zoo
from trainserve.training.augment import check_augmentation
from trainserve.training.checks import check_choice, check_positive, check_range, fail
from trainserve.training.data import NORMALIZERS
from trainserve.training.diagnostics import check_diagnostics
from trainserve.training.splits import split_sizes
from trainserve.training.datasets import DATASETS, DatasetInfo, dataset_info, get_dataset
from trainserve.training.label_fraction import check_label_fraction
from trainserve.training.losses import DEFAULT_HUBER_DELTA, LOSSES, get_loss
from trainserve.training.optimizers import OPTIMIZERS, get_optimizer
from trainserve.training.schedule import check_scheduler
from trainserve.training.seq_tasks import check_token_loss, check_token_task, is_token_task
from trainserve.training import epoch_clinical
from trainserve.training.stopping import check_early_stopping
from trainserve.training.tasks import task_info
from trainserve.training.zoo import ARCHITECTURES, get_architecture

DEFAULT_NORMALIZE = "standard"
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_LOSS = {"classification": "cross_entropy", "regression": "mse",
                "reconstruction": "mse", "generation": "non_saturating"}
DEFAULT_OPTIMIZER = "adam"
DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 32
DEFAULT_CHECKPOINT_EVERY_S = 5.0
# Bounds that keep one job within reason on a small cluster; far above the course's needs.
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 1 << 20
MIN_SYNTHETIC_SAMPLES, MAX_SYNTHETIC_SAMPLES = 8, 10_000_000
MAX_FOLDS = 50  # each fold is a whole training
MAX_CHECKPOINT_EVERY_S = 86_400.0
# How a job survives its dispatcher stopping (see `_check_runtime_limits`).
DEFAULT_MAX_RESTARTS = 3
MAX_RESTARTS = 10
# The longest wall-clock limit a job may ask for (`training.max_duration_s`); a dispatcher's
# own limit (`DispatcherConfig.max_job_duration_s`) defaults to it and may only lower it.
MAX_JOB_DURATION_S = 86_400.0


def check_spec(spec: spec_pb2.JobSpec) -> spec_pb2.JobSpec:
    """A copy of `spec` with every training default applied; raises `InvalidArgument`.

    Sections are checked in order dataset, split, training, model, optimizer name, loss,
    optimizer, so the first error reported is the most fundamental one.
    """
    out = spec_pb2.JobSpec()
    out.CopyFrom(spec)
    info = _check_dataset(out)
    _check_split(out, info)
    check_label_fraction(out, info)
    # An autoencoder trains any dataset on reconstruction: from here on, that is the task.
    info = task_info(out, info)
    if info.task == "generation":  # a GAN: the job-wide fields it refuses (training.zoo.gan)
        _zoo.gan.check_gan_job(out)
    _check_training(out, info)
    _check_model(out, info)
    _check_optimizer_name(out.optimizer)
    _check_loss(out, info)
    _check_optimizer(out)
    return out


def _check_dataset(spec) -> DatasetInfo:
    if not spec.HasField("dataset"):
        fail("spec.dataset", "required")
    ds = spec.dataset
    if not ds.name:
        fail("spec.dataset.name", "required")
    if ds.HasField("uploaded"):  # a user dataset, pinned by the server (jobs/spec.py)
        return _check_uploaded(ds)
    if ds.name not in DATASETS.names():
        fail("spec.dataset.name", f"no built-in or uploaded dataset {ds.name!r}; known: "
             f"{', '.join(DATASETS.names())} (`trainserve dataset upload` adds your own)")
    for name in ("feature_columns", "target_column", "task", "categorical_columns", "missing",
                 "missing_indicators", "fill_value", "columns"):
        if getattr(ds, name):
            fail(f"spec.dataset.{name}", "only uploaded datasets take it")
    defaults = getattr(_datasets, "apply_dataset_defaults", None)  # sequence length, horizon
    if defaults is not None:
        defaults(ds)
    ds.normalize = ds.normalize or DEFAULT_NORMALIZE
    check_choice(ds.normalize, NORMALIZERS, "spec.dataset.normalize", "normalization")
    entry = get_dataset(ds.name)
    synthetic = [n for n in DATASETS.names() if get_dataset(n).synthetic]
    if not entry.synthetic:
        if ds.HasField("num_samples"):
            fail("spec.dataset.num_samples", f"only synthetic datasets ({', '.join(synthetic)}) "
                                              f"accept num_samples; {ds.name!r} has a fixed size")
        if ds.noise != 0:
            fail("spec.dataset.noise", f"only synthetic datasets ({', '.join(synthetic)}) "
                                        f"accept noise")
        return _checked_info(ds)
    if not ds.HasField("num_samples"):
        ds.num_samples = entry.default_num_samples
    if not MIN_SYNTHETIC_SAMPLES <= ds.num_samples <= MAX_SYNTHETIC_SAMPLES:
        fail("spec.dataset.num_samples", f"must be in [{MIN_SYNTHETIC_SAMPLES}, "
                                         f"{MAX_SYNTHETIC_SAMPLES}], got {ds.num_samples}")
    check_range(ds.noise, "spec.dataset.noise", low=0.0, high=float("inf"))
    return _checked_info(ds)


def _check_uploaded(ds) -> DatasetInfo:
    for name in ("num_samples", "sequence_length", "horizon"):
        if ds.HasField(name):
            fail(f"spec.dataset.{name}", "only built-in synthetic datasets take it")
    if ds.noise:
        fail("spec.dataset.noise", "only built-in synthetic datasets take it")
    _datasets.apply_dataset_defaults(ds)
    ds.normalize = ds.normalize or DEFAULT_NORMALIZE
    check_choice(ds.normalize, NORMALIZERS, "spec.dataset.normalize", "normalization")
    return _checked_info(ds)


def _checked_info(ds) -> DatasetInfo:
    info = dataset_info(ds)
    check_augmentation(ds.augmentation, info)
    return info


def _check_split(spec, info: DatasetInfo) -> None:
    sp = spec.split
    _check_folds(sp)
    if not sp.HasField("test_fraction"):
        sp.test_fraction = DEFAULT_TEST_FRACTION
    if not sp.HasField("val_fraction"):
        sp.val_fraction = DEFAULT_VAL_FRACTION
    check_range(sp.test_fraction, "spec.split.test_fraction", low=0.0, high=1.0, low_open=True)
    check_range(sp.val_fraction, "spec.split.val_fraction", low=0.0, high=1.0)
    if sp.test_fraction + sp.val_fraction >= 1:
        fail("spec.split.val_fraction", f"test_fraction + val_fraction must be < 1 to leave "
             f"training samples, got {sp.test_fraction:g} + {sp.val_fraction:g}")
    classification = info.task == "classification"
    if not sp.HasField("stratify"):
        sp.stratify = classification
    elif sp.stratify and not classification:
        fail("spec.split.stratify", f"stratify needs a classification dataset; "
                                    f"{info.name!r} is {info.task}")
    _check_split_sizes(sp, info)


def _check_folds(sp) -> None:
    if not 0 <= sp.folds <= MAX_FOLDS:
        fail("spec.split.folds", f"must be in [0, {MAX_FOLDS}] (0 or 1: no cross-validation), "
                                 f"got {sp.folds}")
    if sp.folds < 2:
        return
    # Each fold validates in turn and the final model trains on all non-test samples, so a
    # separate validation split would be left unused.
    if sp.HasField("val_fraction") and sp.val_fraction != 0:
        fail("spec.split.val_fraction", f"cross-validation (folds = {sp.folds}) validates on "
                                        f"each fold in turn and trains the final model on all "
                                        f"non-test samples; remove val_fraction or set it to 0")
    sp.val_fraction = 0.0


def _check_split_sizes(sp, info: DatasetInfo) -> None:
    # A stratified split needs every class in every split; any split needs one sample.
    need = info.num_classes if sp.stratify else 1
    n_train, n_val, n_test = split_sizes(info.num_samples, sp.test_fraction, sp.val_fraction)
    why = " (one per class, as the split is stratified)" if sp.stratify else ""
    for field, n, name in (("test_fraction", n_test, "test"), ("val_fraction", n_val, "val"),
                           ("test_fraction", n_train, "train")):
        if n < need and not (name == "val" and n == 0):
            fail(f"spec.split.{field}", f"leaves {n} of {info.num_samples} samples for the "
                                        f"{name} split; it needs at least {need}{why}")
    if sp.folds >= 2 and n_train // sp.folds < need:
        fail("spec.split.folds", f"{sp.folds} folds of the {n_train} non-test samples leave "
                                 f"{n_train // sp.folds} per fold; each needs at least "
                                 f"{need}{why}: use fewer folds")


def _check_training(spec, info: DatasetInfo) -> None:
    tr = spec.training
    if not tr.HasField("epochs"):
        tr.epochs = DEFAULT_EPOCHS
    if not 1 <= tr.epochs <= MAX_EPOCHS:
        fail("spec.training.epochs", f"must be in [1, {MAX_EPOCHS}], got {tr.epochs}")
    if not tr.HasField("batch_size"):
        tr.batch_size = DEFAULT_BATCH_SIZE
    if not 1 <= tr.batch_size <= MAX_BATCH_SIZE:
        fail("spec.training.batch_size", f"must be in [1, {MAX_BATCH_SIZE}], got {tr.batch_size}")
    if not tr.HasField("checkpoint_every_s"):
        tr.checkpoint_every_s = DEFAULT_CHECKPOINT_EVERY_S
    check_range(tr.checkpoint_every_s, "spec.training.checkpoint_every_s", low=0.0,
                high=MAX_CHECKPOINT_EVERY_S, high_open=False)
    with_val = spec.split.val_fraction > 0 or spec.split.folds >= 2
    if tr.HasField("early_stopping"):
        clinical = epoch_clinical.names_for(spec, info, with_val)
        check_early_stopping(tr.early_stopping, info.task, with_val,
                             "spec.training.early_stopping", clinical)
        epoch_clinical.require(tr, tr.early_stopping.metric, clinical,
                               "spec.training.early_stopping.metric")
    epoch_clinical.check(tr, info.task, with_val)
    for name in ("l1", "l2"):
        check_range(getattr(tr.regularization, name), f"spec.training.regularization.{name}",
                    low=0.0, high=float("inf"))
    _check_performance(tr.performance, info)
    _check_runtime_limits(tr)
    _check_top_k(tr, info)
    check_diagnostics(tr)


def _check_top_k(tr, info: DatasetInfo) -> None:
    """`top_k` (unset: the default of `training.clinical_metrics`) is a classifier's, below its
    number of classes (k = classes would always score 1)."""
    if not tr.HasField("top_k"):
        return
    if info.task != "classification":
        fail("spec.training.top_k", f"top-k accuracy needs a classification task; this job's "
                                    f"is {info.task}")
    if not 1 <= tr.top_k < info.num_classes:
        fail("spec.training.top_k", f"must be in [1, {info.num_classes - 1}] for "
                                    f"{info.num_classes} classes, got {tr.top_k}")


def _check_runtime_limits(tr) -> None:
    """`max_restarts` (at most `MAX_RESTARTS`: a job whose dispatcher keeps dying must not be
    resumed forever) and `max_duration_s` (at most `MAX_JOB_DURATION_S`). Both are left
    unset/0 when not given, the dispatcher's defaults then apply (`DEFAULT_MAX_RESTARTS`, its
    `max_job_duration_s`), so specs stored before these fields existed read the same."""
    if tr.HasField("max_restarts") and not 0 <= tr.max_restarts <= MAX_RESTARTS:
        fail("spec.training.max_restarts",
             f"must be in [0, {MAX_RESTARTS}], got {tr.max_restarts}")
    limit = tr.max_duration_s
    if not (math.isfinite(limit) and limit >= 0):
        fail("spec.training.max_duration_s", f"must be >= 0 seconds, got {limit:g}")
    if limit > MAX_JOB_DURATION_S:
        fail("spec.training.max_duration_s",
             f"at most {MAX_JOB_DURATION_S:g} s (the server's maximum), got {limit:g}")


AUTOCAST_MODES = ("none", "bf16")


def _check_performance(perf, info: DatasetInfo) -> None:
    """`spec.training.performance`: autocast "" means "none" (left unset, so specs that do
    not ask for speed options stay as they were); channels_last (unset: chosen by the loop)
    needs image inputs; compile is
    refused for GANs, whose steps call their sub-networks directly."""
    field = "spec.training.performance"
    if perf.autocast:
        check_choice(perf.autocast, AUTOCAST_MODES, f"{field}.autocast", "autocast mode")
    if perf.HasField("channels_last") and perf.channels_last and not info.is_image:
        fail(f"{field}.channels_last", f"needs image inputs (C, H, W); dataset {info.name!r} "
                                       f"has {info.input_kind} inputs of shape {info.input_shape}")
    if perf.compile and info.task == "generation":
        fail(f"{field}.compile", "not supported for GANs")


def _check_model(spec, info: DatasetInfo) -> None:
    arch = spec.model.WhichOneof("arch") if spec.HasField("model") else None
    if arch is None:
        fail("spec.model", f"required: set one of {', '.join(ARCHITECTURES.names())}")
    check_choice(arch, ARCHITECTURES, "spec.model", "architecture")
    check_token_task(spec, info, arch)  # seq2seq / language_model datasets (training.seq_tasks)
    entry = get_architecture(arch)
    msg = getattr(spec.model, arch)
    entry.apply_defaults(msg)
    entry.check(msg, f"spec.model.{arch}", info, spec)
    # Model-wide fields (init, activation parameters). The zoo's checks may apply them too;
    # applying defaults twice is harmless, and this keeps them applied whatever the zoo does.
    model_defaults = getattr(_zoo, "apply_model_defaults", None)
    if model_defaults is not None:
        model_defaults(spec.model)


def _check_optimizer_name(opt) -> None:
    opt.name = opt.name or DEFAULT_OPTIMIZER
    check_choice(opt.name, OPTIMIZERS, "spec.optimizer.name", "optimizer")


def _check_loss(spec, info: DatasetInfo) -> None:
    if is_token_task(info):  # per-token cross-entropy only (training.seq_tasks)
        return check_token_loss(spec, info)
    loss, required = spec.loss, get_optimizer(spec.optimizer.name).loss
    loss.name = loss.name or required or DEFAULT_LOSS[info.task]
    check_choice(loss.name, LOSSES, "spec.loss.name", "loss")
    if required and loss.name != required:
        fail("spec.loss.name", f"optimizer {spec.optimizer.name!r} trains with the {required} "
                               f"loss; set spec.loss.name to {required!r} or leave it unset")
    entry = get_loss(loss.name)
    if info.task not in entry.tasks or (entry.max_classes or info.num_classes) < info.num_classes:
        _refuse_loss(loss.name, info)
    _check_loss_fields(loss, entry, info)


def _refuse_loss(name: str, info: DatasetInfo) -> None:
    entry = get_loss(name)
    if info.task == "reconstruction":
        fail("spec.loss.name", f"an autoencoder trains on the reconstruction MSE (plus its "
                               f"kind's penalty), not {name}; set spec.loss.name to 'mse' or "
                               f"leave it unset")
    if info.task in entry.tasks:  # too many classes (bce)
        fail("spec.loss.name", f"{name} takes at most {entry.max_classes} classes and "
                               f"{info.name!r} has {info.num_classes}: use cross_entropy")

    def fits(n):
        e = get_loss(n)
        return info.task in e.tasks and (e.max_classes or info.num_classes) >= info.num_classes
    fail("spec.loss.name", f"{name} does not fit {info.task} (dataset {info.name!r}); "
                           f"use one of {', '.join(n for n in LOSSES.names() if fits(n))}")


def _check_loss_fields(loss, entry, info: DatasetInfo) -> None:
    if loss.HasField("huber_delta") and not entry.accepts_huber_delta:
        takers = [n for n in LOSSES.names() if get_loss(n).accepts_huber_delta]
        fail("spec.loss.huber_delta", f"only {', '.join(takers)} accepts huber_delta")
    if entry.accepts_huber_delta:
        if not loss.HasField("huber_delta"):
            loss.huber_delta = DEFAULT_HUBER_DELTA
        check_positive(loss.huber_delta, "spec.loss.huber_delta")
    if not loss.class_weights:
        return
    if info.task == "reconstruction":
        fail("spec.loss.class_weights", f"an autoencoder reconstructs inputs and ignores the "
                                        f"classes of {info.name!r}; remove class_weights")
    if not entry.accepts_class_weights:
        takers = [n for n in LOSSES.names() if get_loss(n).accepts_class_weights]
        fail("spec.loss.class_weights", f"only {', '.join(takers)} accepts class_weights")
    if len(loss.class_weights) != info.num_classes:
        fail("spec.loss.class_weights", f"needs one weight per class ({info.num_classes} for "
                                        f"{info.name!r}), got {len(loss.class_weights)}")
    for i, w in enumerate(loss.class_weights):
        check_positive(w, f"spec.loss.class_weights[{i}]")


def _check_optimizer(spec) -> None:
    opt = spec.optimizer
    entry = get_optimizer(opt.name)
    if not opt.HasField("lr"):
        opt.lr = entry.default_lr
    check_positive(opt.lr, "spec.optimizer.lr")
    check_range(opt.weight_decay, "spec.optimizer.weight_decay", low=0.0, high=float("inf"))
    if opt.weight_decay and not entry.weight_decay:
        fail("spec.optimizer.weight_decay", f"{opt.name} takes no weight_decay (use spec."
                                            f"training.regularization.l2 or another optimizer)")
    check_range(opt.momentum, "spec.optimizer.momentum", low=0.0, high=1.0)
    if opt.momentum and not entry.momentum:
        takers = [n for n in OPTIMIZERS.names() if get_optimizer(n).momentum]
        fail("spec.optimizer.momentum", f"{opt.name} takes no momentum; "
                                        f"only {', '.join(takers)} do")
    if opt.nesterov and not entry.nesterov:
        takers = [n for n in OPTIMIZERS.names() if get_optimizer(n).nesterov]
        fail("spec.optimizer.nesterov", f"{opt.name} has no nesterov; only {', '.join(takers)}")
    if opt.nesterov and opt.momentum == 0:
        fail("spec.optimizer.nesterov", "nesterov needs momentum > 0")
    check_range(opt.grad_clip, "spec.optimizer.grad_clip", low=0.0, high=float("inf"))
    _check_betas(opt, entry)
    check_scheduler(opt, spec.training.epochs)
    if entry.steps == "sample":
        _check_per_sample_steps(spec)


def _check_betas(opt, entry) -> None:
    if not opt.betas:
        return
    if not entry.betas:
        takers = [n for n in OPTIMIZERS.names() if get_optimizer(n).betas]
        fail("spec.optimizer.betas", f"{opt.name} takes no betas; only {', '.join(takers)} do")
    if len(opt.betas) != 2:
        fail("spec.optimizer.betas", f"give two values (beta1, beta2), got {len(opt.betas)}")
    for i, b in enumerate(opt.betas):
        check_range(b, f"spec.optimizer.betas[{i}]", low=0.0, high=1.0)


def _check_per_sample_steps(spec) -> None:
    """The perceptron rule updates after every single sample: one worker, no batch norm."""
    name = spec.optimizer.name
    if spec.scaling.num_workers > 1:
        fail("spec.scaling.num_workers", f"optimizer {name!r} updates after every sample, which "
                                         f"cannot be split across workers; use 1 worker")
    arch = spec.model.WhichOneof("arch")
    if _zoo.uses_batch_norm(spec.model):
        fail(f"spec.model.{arch}.batch_norm", f"batch norm needs at least 2 samples a step and "
                                              f"optimizer {name!r} steps on one; turn it off")
