"""`check_spec`: apply the documented defaults to a `JobSpec` and validate its training fields.

Torch-free, so the API can call it on submission. Every error is an `errors.InvalidArgument`
whose `field` is the full path (`spec.training.epochs`, `spec.model.mlp.hidden[1]`, ...).
`name`, `scaling`, `deploy`, `description` and `labels` are left to the caller.
"""
from __future__ import annotations

from trainserve.pb import spec_pb2
from trainserve.train.checks import check_choice, check_positive, check_range, fail
from trainserve.train.data import NORMALIZERS, split_sizes
from trainserve.train.datasets import DATASETS, DatasetInfo, dataset_info, get_dataset
from trainserve.train.losses import LOSSES, get_loss
from trainserve.train.optimizers import OPTIMIZERS, get_optimizer
from trainserve.train.zoo import ARCHITECTURES, get_architecture

DEFAULT_NORMALIZE = "standard"
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_LOSS = {"classification": "cross_entropy", "regression": "mse"}
DEFAULT_OPTIMIZER = "adam"
DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 32
# Bounds that keep one job within reason on a small cluster; far above the course's needs.
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 1 << 20
MIN_SYNTHETIC_SAMPLES, MAX_SYNTHETIC_SAMPLES = 8, 10_000_000


def check_spec(spec: spec_pb2.JobSpec) -> spec_pb2.JobSpec:
    """A copy of `spec` with every training default applied; raises `InvalidArgument`.

    Sections are checked in order dataset, split, training, model, loss, optimizer, so the
    first error reported is the most fundamental one.
    """
    out = spec_pb2.JobSpec()
    out.CopyFrom(spec)
    info = _check_dataset(out)
    _check_split(out, info)
    _check_training(out.training)
    _check_model(out, info)
    _check_loss(out.loss, info)
    _check_optimizer(out.optimizer)
    return out


def _check_dataset(spec) -> DatasetInfo:
    if not spec.HasField("dataset"):
        fail("spec.dataset", "required")
    ds = spec.dataset
    if not ds.name:
        fail("spec.dataset.name", "required")
    check_choice(ds.name, DATASETS, "spec.dataset.name", "dataset")
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
        return dataset_info(ds)
    if not ds.HasField("num_samples"):
        ds.num_samples = entry.default_num_samples
    if not MIN_SYNTHETIC_SAMPLES <= ds.num_samples <= MAX_SYNTHETIC_SAMPLES:
        fail("spec.dataset.num_samples", f"must be in [{MIN_SYNTHETIC_SAMPLES}, "
                                         f"{MAX_SYNTHETIC_SAMPLES}], got {ds.num_samples}")
    check_range(ds.noise, "spec.dataset.noise", low=0.0, high=float("inf"))
    return dataset_info(ds)


def _check_split(spec, info: DatasetInfo) -> None:
    sp = spec.split
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


def _check_training(tr) -> None:
    if not tr.HasField("epochs"):
        tr.epochs = DEFAULT_EPOCHS
    if not 1 <= tr.epochs <= MAX_EPOCHS:
        fail("spec.training.epochs", f"must be in [1, {MAX_EPOCHS}], got {tr.epochs}")
    if not tr.HasField("batch_size"):
        tr.batch_size = DEFAULT_BATCH_SIZE
    if not 1 <= tr.batch_size <= MAX_BATCH_SIZE:
        fail("spec.training.batch_size", f"must be in [1, {MAX_BATCH_SIZE}], got {tr.batch_size}")


def _check_model(spec, info: DatasetInfo) -> None:
    arch = spec.model.WhichOneof("arch") if spec.HasField("model") else None
    if arch is None:
        fail("spec.model", f"required: set one of {', '.join(ARCHITECTURES.names())}")
    check_choice(arch, ARCHITECTURES, "spec.model", "architecture")
    entry = get_architecture(arch)
    msg = getattr(spec.model, arch)
    entry.apply_defaults(msg)
    entry.check(msg, f"spec.model.{arch}", info, spec)


def _check_loss(loss, info: DatasetInfo) -> None:
    loss.name = loss.name or DEFAULT_LOSS[info.task]
    check_choice(loss.name, LOSSES, "spec.loss.name", "loss")
    entry = get_loss(loss.name)
    if info.task not in entry.tasks:
        fitting = [n for n in LOSSES.names() if info.task in get_loss(n).tasks]
        fail("spec.loss.name", f"{loss.name} does not fit {info.task} (dataset {info.name!r}); "
                               f"use one of {', '.join(fitting)}")
    if not loss.class_weights:
        return
    if not entry.accepts_class_weights:
        takers = [n for n in LOSSES.names() if get_loss(n).accepts_class_weights]
        fail("spec.loss.class_weights", f"only {', '.join(takers)} accepts class_weights")
    if len(loss.class_weights) != info.num_classes:
        fail("spec.loss.class_weights", f"needs one weight per class ({info.num_classes} for "
                                        f"{info.name!r}), got {len(loss.class_weights)}")
    for i, w in enumerate(loss.class_weights):
        check_positive(w, f"spec.loss.class_weights[{i}]")


def _check_optimizer(opt) -> None:
    opt.name = opt.name or DEFAULT_OPTIMIZER
    check_choice(opt.name, OPTIMIZERS, "spec.optimizer.name", "optimizer")
    entry = get_optimizer(opt.name)
    if not opt.HasField("lr"):
        opt.lr = entry.default_lr
    check_positive(opt.lr, "spec.optimizer.lr")
    check_range(opt.weight_decay, "spec.optimizer.weight_decay", low=0.0, high=float("inf"))
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
