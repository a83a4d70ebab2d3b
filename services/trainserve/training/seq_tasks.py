"""The token tasks: sequence-to-sequence ("seq2seq", e.g. `digit_reversal`, model `seq2seq`) and
character language modelling ("language_model", e.g. `corpus`, model `gpt`).

Torch-free (validation uses it); the loop's hooks are in `seq_task_hooks`.

- seq2seq: per-token cross-entropy under teacher forcing (the decoder is fed the true previous
  token), averaged over the T target tokens of a sample. Evaluation decodes greedily (each step
  fed the model's own previous token): `<split>_token_accuracy` (tokens right at their
  position) and `<split>_exact_match` (whole sequences right) are of the greedy outputs, while
  `<split>_loss` stays the teacher-forced cross-entropy. Per epoch `train_loss`,
  `train_token_accuracy` (teacher-forced), `val_loss`, `val_token_accuracy`, `val_exact_match`;
  at the end the same for test.
- language_model: next-character cross-entropy (nats) averaged over the window's positions;
  `<split>_token_accuracy` is next-character accuracy. The final metrics add, for the final
  weights, `val_loss` and the bigram baseline on the same splits, `bigram_val_loss` and
  `bigram_test_loss`: a character bigram model counted on the training split, add-k smoothed
  with k in {0.01, 0.03, 0.1, 0.3, 1} picked on the validation split (which favours the
  baseline).
"""
from __future__ import annotations

from trainserve.training.checks import fail

SEQ2SEQ, LANGUAGE_MODEL, MASKED_LM = "seq2seq", "language_model", "masked_lm"
TOKEN_TASKS = (SEQ2SEQ, LANGUAGE_MODEL, MASKED_LM)  # masked_lm: training.mlm_task
ARCH_OF_TASK = {SEQ2SEQ: "seq2seq", LANGUAGE_MODEL: "gpt", MASKED_LM: "bert"}
EXAMPLE_DATASET = {SEQ2SEQ: "digit_reversal", LANGUAGE_MODEL: "corpus", MASKED_LM: "corpus_mlm"}
LOSS = "cross_entropy"


def is_token_task(info) -> bool:
    return info.task in TOKEN_TASKS


def check_token_task(spec, info, arch: str) -> None:
    """Token datasets take only their architecture (and the reverse is checked by the
    architectures themselves); no cross-validation. Raises `InvalidArgument`."""
    if not is_token_task(info):
        return
    want = ARCH_OF_TASK[info.task]
    if arch != want:
        fail("spec.model", f"dataset {info.name!r} is a {info.task} dataset of token ids; "
                           f"only the {want} architecture trains on it: set spec.model.{want}")
    if spec.split.folds >= 2:
        fail("spec.split.folds", f"cross-validation is not available for {info.task} datasets; "
                                 f"set folds to 0")


def check_token_loss(spec, info) -> None:
    """The loss of a token task: per-token cross-entropy only (the default)."""
    loss = spec.loss
    loss.name = loss.name or LOSS
    if loss.name != LOSS:
        fail("spec.loss.name", f"{info.task} models train on per-token cross-entropy; set "
                               f"spec.loss.name to {LOSS!r} or leave it unset, not {loss.name!r}")
    if loss.class_weights:
        fail("spec.loss.class_weights", f"not supported for {info.task}; remove class_weights")
    if loss.HasField("huber_delta"):
        fail("spec.loss.huber_delta", "only the huber loss takes it; remove huber_delta")
    from trainserve.training.optimizers import get_optimizer
    required = get_optimizer(spec.optimizer.name).loss
    if required and required != LOSS:
        fail("spec.optimizer.name", f"optimizer {spec.optimizer.name!r} trains with the "
                                    f"{required} loss, not {info.task}; use adam (or sgd, ...)")


def make_token_task(spec, info):
    if info.task == MASKED_LM:
        from trainserve.training.mlm_task import MaskedLMTask
        return MaskedLMTask(spec, info)
    from trainserve.training.seq_task_hooks import LanguageModelTask, Seq2SeqTask
    return (Seq2SeqTask if info.task == SEQ2SEQ else LanguageModelTask)(spec, info)
