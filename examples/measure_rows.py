"""The rows of examples/README.md's table, for examples/measure.py: per row its topic, its
examples, how one seed is measured through the stack (`Session`: jobs by the SDK), how the
result is written and the target checked. The claims are those tests/test_examples.py and
tests/test_examples_generative.py check in-process; their pure helpers are reused here."""
from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Callable

THREE = (0, 1, 2)
SEARCH_VARIES = ("one run (seed 0); a search varies from run to run: its trials end in an "
                 "order that depends on timing, and what the scheduler stops and the sampler "
                 "proposes follows that order")


@dataclass(frozen=True)
class Row:
    """One line of the table. `measure(session, seed)` runs the row's jobs at one seed and
    returns the values it keeps (JSON-able); `shown(seeds, runs)` is the result text from the
    runs in seed order; `met(runs)` whether the target holds (None: the row has no target).
    A row without `measure` only points elsewhere (its `shown` takes no runs)."""
    key: str
    topic: str
    examples: str
    measure: Callable | None
    shown: Callable[[list[int], list[dict]], str]
    target: str = "—"
    met: Callable[[list[dict]], bool] | None = None
    seeds: tuple[int, ...] = THREE


# --- formatting -------------------------------------------------------------------------------

def _fmt(value: float, spec: str) -> str:
    return f"{value:{spec}}"


def stat(seeds: list[int], values: list[float], spec: str = ".3f") -> str:
    """One value with its seed, or mean ± std over the seeds with each seed's value."""
    if len(values) == 1:
        return f"{_fmt(values[0], spec)} (seed {seeds[0]})"
    mean, std = statistics.fmean(values), statistics.stdev(values)
    each_value = ", ".join(_fmt(v, spec) for v in values)
    return (f"{_fmt(mean, spec)} ± {_fmt(std, spec)} "
            f"(seeds {', '.join(map(str, seeds))}: {each_value})")


def mean_of(seeds: list[int], values: list[float], spec: str = ".3f") -> str:
    """A companion figure: its mean over the seeds (its values per seed with one seed)."""
    return _fmt(statistics.fmean(values), spec)


def per_seed(seeds: list[int], texts: list[str]) -> str:
    """Values that do not average (epochs, counts): each seed's, labelled."""
    if len(texts) == 1:
        return f"{texts[0]} (seed {seeds[0]})"
    return "; ".join(f"seed {s}: {t}" for s, t in zip(seeds, texts))


def slashed(seeds: list[int], texts: list[str]) -> str:
    """Short values that do not average (counts): `/`-separated in seed order."""
    return f"{' / '.join(texts)} (seed{'s' * (len(seeds) > 1)} {' / '.join(map(str, seeds))})"


def shows(label: str, key: str, spec: str = ".3f", after: str = "") -> Callable:
    """`shown` for a row that reports one metric."""
    return lambda seeds, runs: f"{label} {stat(seeds, col(runs, key), spec)}{after}"


def each(ok: Callable[[dict], bool]) -> Callable[[list[dict]], bool]:
    """`met` for a target that must hold at every seed (`met.at(run)`: at one)."""
    def met(runs: list[dict]) -> bool:
        return all(ok(r) for r in runs)
    met.at = ok
    return met


def col(runs: list[dict], key: str) -> list[float]:
    return [r[key] for r in runs]


def metric(name: str, *keys: str) -> Callable:
    """`measure` of a row that reads the final metrics of one example's job."""
    return lambda s, seed: s.metrics(name, seed, *keys)


# --- measures that need more than a job's metrics -----------------------------------------------

def _forecast(name: str) -> Callable:
    """Test MSE of the example's job over the MSE of repeating the last value (same split)."""
    def measure(s, seed):
        from examples.options_measure import last_value_mse, load
        mse = s.metrics(name, seed, "test_mse")["test_mse"]
        return {"ratio": mse / last_value_mse(load(name, seed=seed))}
    return measure


def _early_stopping(s, seed):
    m = s.metrics("early_stopping", seed, "stopped_epoch", "best_epoch")
    return m | {"epochs": s.spec("early_stopping", seed)["training"]["epochs"]}


def _test_inputs(name: str, seed: int):
    """The example's normalized train and test inputs, flattened, as its job saw them."""
    from examples.options_measure import load
    from trainserve.training.data import prepare_data
    data = prepare_data(load(name, seed=seed))
    return tuple(a.reshape(len(a), -1) for a in (data.x_train, data.x_test))


def _autoencoder(s, seed):
    import numpy as np
    from sklearn.decomposition import PCA
    x_train, x_test = _test_inputs("autoencoder_digits", seed)
    pca = PCA(8, random_state=0).fit(x_train)
    pca_mse = float(np.mean((pca.inverse_transform(pca.transform(x_test)) - x_test) ** 2))
    return s.metrics("autoencoder_digits", seed, "test_recon_mse") | {"pca8_mse": pca_mse}


def _denoising(s, seed):
    """Both autoencoders' MSE against the clean test inputs from the same noisy ones."""
    import numpy as np

    from tests.test_examples import _reconstruction_mse
    noise = s.spec("denoising_autoencoder_digits", seed)["model"]["autoencoder"]["noise"]
    clean = _test_inputs("denoising_autoencoder_digits", seed)[1]
    noisy = (clean + np.random.default_rng(0).normal(0, noise, clean.shape)).astype(np.float32)
    out = {"noise_mse": float(np.mean((noisy - clean) ** 2))}
    for key, name in (("denoising_mse", "denoising_autoencoder_digits"),
                      ("plain_mse", "autoencoder_digits")):
        out[key] = _reconstruction_mse(s.artifact(s.job(name, seed)), noisy, clean)
    return out


def _vae(s, seed):
    from tests.test_examples_generative import vae_quality
    job = s.job("vae_digits", seed)
    return vae_quality(s.judge(), s.artifact(job)) | {"recon_mse": job.metrics["test_recon_mse"]}


def _gan_digits(s, seed):
    from tests.test_examples_generative import gan_quality
    return gan_quality(s.judge(), s.artifact(s.job("gan_digits", seed)))


def _without_sparsity(doc: dict) -> None:
    for field in ("kind", "sparsity", "sparsity_weight"):
        doc["model"]["autoencoder"].pop(field, None)


def _sparse(s, seed):
    name = "sparse_autoencoder_digits"
    sparse = s.job(name, seed).metrics
    dense = s.job(name, seed, _without_sparsity, variant="no penalty").metrics
    dense8 = s.job("autoencoder_digits", seed).metrics
    return {"sparsity": sparse["test_code_sparsity"], "recon_mse": sparse["test_recon_mse"],
            "dense_sparsity": dense["test_code_sparsity"],
            "dense_recon_mse": dense["test_recon_mse"],
            "dense8_recon_mse": dense8["test_recon_mse"]}


def _pretrained_pair(s, seed, pretrain: str, example: str):
    """Pre-train `pretrain` at the seed, then `example` from that exact version (pinned) and,
    with the same spec and budget, from scratch: (pre-training job, fine-tuned job, scratch
    job)."""
    pre = s.job(pretrain, seed)

    def pinned(doc):
        doc["model"]["transfer"]["version"] = pre.model_version

    def scratch(doc):
        doc["model"].pop("transfer")
    return (pre, s.job(example, seed, pinned, variant=f"v{pre.model_version}"),
            s.job(example, seed, scratch, variant="scratch"))


def _transfer(s, seed):
    _, got, base = _pretrained_pair(s, seed, "autoencoder_digits_pretrain",
                                    "transfer_from_autoencoder")
    return {"pretrained": got.metrics["test_accuracy"], "scratch": base.metrics["test_accuracy"]}


def _bert(s, seed):
    pre, got, base = _pretrained_pair(s, seed, "bert_mlm", "bert_finetune")
    return {"pretrained": got.metrics["test_accuracy"], "scratch": base.metrics["test_accuracy"],
            "mlm_accuracy": pre.metrics["test_mlm_accuracy"],
            "perplexity": pre.metrics["test_perplexity"]}


def _seq2seq(s, seed):
    plain = s.metrics("seq2seq_reverse", seed, "test_exact_match", "test_token_accuracy")
    attention = s.metrics("seq2seq_reverse_attention", seed, "test_exact_match",
                          "test_token_accuracy")
    return {"plain_" + k: v for k, v in plain.items()} | attention


def _gap(s, name, seed) -> float:
    """Validation minus training loss at the last epoch, from the job's curves."""
    series = s.client.curves(s.job(name, seed).id)["metrics"]
    return series["val_loss"][-1][1] - series["train_loss"][-1][1]


def _regularization(s, seed):
    return {"gap": _gap(s, "regularization_l2_dropout", seed),
            "none_gap": _gap(s, "regularization_none", seed),
            "accuracy": s.job("regularization_l2_dropout", seed).metrics["test_accuracy"],
            "none_accuracy": s.job("regularization_none", seed).metrics["test_accuracy"]}


def _search(name: str, test_metric: str) -> Callable:
    """A search's best trial (its config and metrics), the test metric of the job, and how
    many trials ended how after how many epochs."""
    def measure(s, seed):
        job = s.client.get_job(s.job(name, seed).id)
        best = next(t for t in job.trials if t.id == job.best_trial)
        ends = Counter((t.state, t.epochs) for t in job.trials)
        metric_name = s.spec(name, seed)["search"]["metric"]
        return {"best_trial": best.id, "config": dict(best.config),
                "best": best.metrics[metric_name], "test": job.metrics[test_metric],
                "trials": len(job.trials), "epochs_trained": sum(t.epochs for t in job.trials),
                "epochs_full": len(job.trials) * s.spec(name, seed)["training"]["epochs"],
                "ends": [[state, epochs, n] for (state, epochs), n in sorted(ends.items())]}
    return measure


# --- result texts --------------------------------------------------------------------------

def _diabetes(seeds, runs):
    return (f"test R² {stat(seeds, col(runs, 'test_r2'))}: each seed is a different 88-patient "
            "test split, and R² swings with it")


def _cv(seeds, runs):
    return (f"CV ROC AUC (mean of 5 folds) {stat(seeds, col(runs, 'cv_auc_mean'), '.4f')}, "
            f"the folds' std {mean_of(seeds, col(runs, 'cv_auc_std'), '.4f')} on average; "
            f"test AUC {stat(seeds, col(runs, 'test_auc'))}")


def _stops(seeds, runs):
    return per_seed(seeds, [
        f"stops at epoch {r['stopped_epoch']:.0f} of {r['epochs']}, restores epoch "
        f"{r['best_epoch']:.0f}" for r in runs])


def _ae_text(seeds, runs):
    return (f"test reconstruction MSE {stat(seeds, col(runs, 'test_recon_mse'))}; PCA with 8 "
            f"components on the same normalized split {stat(seeds, col(runs, 'pca8_mse'))}")


def _dae_text(seeds, runs):
    return (f"MSE vs the clean test inputs from noisy ones "
            f"{stat(seeds, col(runs, 'denoising_mse'))}; the plain autoencoder "
            f"{stat(seeds, col(runs, 'plain_mse'))}; the noise itself "
            f"{mean_of(seeds, col(runs, 'noise_mse'))}")


def _samples(what: str, extra: Callable = lambda seeds, runs: "") -> Callable:
    def shown(seeds, runs):
        return (f"{stat(seeds, col(runs, 'recognized'), '.0%')} of 500 {what} samples labelled "
                "with confidence ≥ 0.8 by the `cnn_digits.yaml` classifier (seed 0, trained by "
                f"the stack), digits covered {slashed(seeds, [str(r['digits']) for r in runs])}"
                + extra(seeds, runs))
    return shown


def _sparse_text(seeds, runs):
    return (f"{stat(seeds, col(runs, 'sparsity'), '.0%')} of the test codes' values off "
            f"(`test_code_sparsity`; the same net without the penalty "
            f"{stat(seeds, col(runs, 'dense_sparsity'), '.0%')}); test reconstruction MSE "
            f"{stat(seeds, col(runs, 'recon_mse'))} (without the penalty "
            f"{mean_of(seeds, col(runs, 'dense_recon_mse'))}, the dense 8-value "
            f"`autoencoder_digits.yaml` {mean_of(seeds, col(runs, 'dense8_recon_mse'))}, means)")


def _transfer_text(seeds, runs):
    return (f"test accuracy {stat(seeds, col(runs, 'pretrained'))}; the same model from "
            f"scratch {stat(seeds, col(runs, 'scratch'))}")


def _bert_text(seeds, runs):
    return (f"test accuracy {stat(seeds, col(runs, 'pretrained'))}; the same model from "
            f"scratch {stat(seeds, col(runs, 'scratch'))} (the most frequent source alone: "
            f"0.41); the pre-trained encoders fill in {mean_of(seeds, col(runs, 'mlm_accuracy'))}"
            f" of the masked test characters (perplexity "
            f"{mean_of(seeds, col(runs, 'perplexity'), '.1f')}, means); "
            "[docs/bert.md](../docs/bert.md)")


def _gan_rings_text(seeds, runs):
    modes = slashed(seeds, [f"{v:.0f}" for v in col(runs, "modes_covered")])
    return (f"modes covered of 8: {modes}; high-quality samples "
            f"{stat(seeds, col(runs, 'high_quality_fraction'), '.1%')} "
            "(1000 samples, definitions in `services/trainserve/training/gan_task.py`)")


def _plain_seq_text(seeds, runs):
    return (f"test exact match {stat(seeds, col(runs, 'plain_test_exact_match'))}, token "
            f"accuracy {stat(seeds, col(runs, 'plain_test_token_accuracy'))} (greedy decoding)")


def _attention_text(seeds, runs):
    return (f"test exact match {stat(seeds, col(runs, 'test_exact_match'))}, token accuracy "
            f"{stat(seeds, col(runs, 'test_token_accuracy'))} (same budget); its attention map "
            "is the anti-diagonal (step i reads position 19 − i): "
            "`examples/attention_measure.py`, "
            "[docs/interpretability.md](../docs/interpretability.md#attention-maps)")


def _gpt_text(seeds, runs):
    return (f"validation cross-entropy {stat(seeds, col(runs, 'val_loss'))} nats/char vs "
            f"{mean_of(seeds, col(runs, 'bigram_val_loss'))} for a character bigram (test "
            f"{stat(seeds, col(runs, 'test_loss'))} vs "
            f"{mean_of(seeds, col(runs, 'bigram_test_loss'))}); `generate(...)` samples text")


def _reg_text(seeds, runs):
    return ("validation − train loss gap at the last epoch "
            f"{stat(seeds, col(runs, 'gap'), '.2f')} vs "
            f"{stat(seeds, col(runs, 'none_gap'), '.2f')}; test accuracy "
            f"{stat(seeds, col(runs, 'accuracy'))} vs {stat(seeds, col(runs, 'none_accuracy'))}")


def _value(text: str) -> str:
    """A sampled value as the row shows it: numbers to 3 significant digits."""
    try:
        return f"{float(text):.3g}"
    except ValueError:
        return text


def _search_text(best: str, test: str, fmt: str = ".3f") -> Callable:
    def shown(seeds, runs):
        r = runs[0]
        config = ", ".join(f"{k} = {_value(v)}" for k, v in sorted(r["config"].items()))
        ends = ", ".join(f"{n} {state.replace('_', ' ')}" + (f" after {e}" if e else "")
                         for state, e, n in r["ends"])
        # Trials that report once, at their end (cross-validated), count no epochs.
        epochs = (f"{r['epochs_trained']} epochs trained of the {r['epochs_full']} a full run "
                  "of every trial takes, " if r["epochs_trained"] else "")
        return (f"{SEARCH_VARIES}: best trial {r['best_trial']} ({config}): {best} "
                f"{r['best']:{fmt}}, {test} {r['test']:.3f}; {epochs}{r['trials']} trials: "
                f"{ends}")
    return shown


def _no_runs(text: str) -> Callable:
    return lambda seeds, runs: text


ROWS = [
    Row("perceptron_xor", "Rosenblatt's perceptron, and why it cannot learn XOR",
        "`perceptron_xor.yaml`", metric("perceptron_xor", "test_accuracy"),
        shows("test accuracy", "test_accuracy", after=" (fails, as it must)"), "≤ 0.75",
        each(lambda r: r["test_accuracy"] <= 0.75)),
    Row("xor_mlp", "MLP: the first non-linear problem", "`xor_mlp.yaml`",
        metric("xor_mlp", "test_accuracy"), shows("test accuracy", "test_accuracy"), "100%",
        each(lambda r: r["test_accuracy"] == 1.0)),
    Row("mlp_moons", "MLP on a non-linear 2-D problem", "`mlp_moons.yaml`",
        metric("mlp_moons", "test_accuracy"), shows("test accuracy", "test_accuracy"), "≥ 0.97",
        each(lambda r: r["test_accuracy"] >= 0.97)),
    Row("rbf_circles", "RBF network (k-means centres, learnable widths)", "`rbf_circles.yaml`",
        metric("rbf_circles", "test_accuracy"), shows("test accuracy", "test_accuracy"),
        "≥ 0.97", each(lambda r: r["test_accuracy"] >= 0.97)),
    Row("cnn_digits", "CNN: conv/pool stacks, batch norm", "`cnn_digits.yaml`",
        metric("cnn_digits", "test_accuracy"), shows("test accuracy", "test_accuracy"),
        "≥ 0.98", each(lambda r: r["test_accuracy"] >= 0.98)),
    Row("phantoms", "CNN on medical-looking images: lesion present or not in 32×32 CT-like "
        "phantoms (built-in `phantoms`); the lesion's size (regression), a ResNet, "
        "label-preserving augmentation", "`phantom_cnn.yaml`, `phantom_size_cnn.yaml`, "
        "`phantom_resnet.yaml`, `phantom_augment.yaml`", None,
        _no_runs("[Lesion phantoms](#lesion-phantoms) below: mean ± std over 3 seeds, with "
                 "baselines, made by `examples/phantom_measure.py`"), "each row's there",
        seeds=()),
    Row("digits_lenet5", "LeNet-5, data-parallel on 2 workers (the quickstart's job)",
        "`digits_lenet5.yaml`", metric("digits_lenet5", "test_accuracy"),
        shows("test accuracy", "test_accuracy", after=" with 2 DDP workers"), "≥ 0.97",
        each(lambda r: r["test_accuracy"] >= 0.97)),
    Row("lenet5_digits", "LeNet-5 tuned: AdamW, cosine schedule, input-noise augmentation, "
        "1 worker", "`lenet5_digits.yaml`", metric("lenet5_digits", "test_accuracy"),
        shows("test accuracy", "test_accuracy"), "≥ 0.98",
        each(lambda r: r["test_accuracy"] >= 0.98)),
    Row("resnet_digits", "ResNet with augmentation and a cosine schedule", "`resnet_digits.yaml`",
        metric("resnet_digits", "test_accuracy"), shows("test accuracy", "test_accuracy"),
        "≥ 0.98", each(lambda r: r["test_accuracy"] >= 0.98)),
    Row("mlp_breast_cancer_cv", "k-fold cross-validation, early stopping (clinical data)",
        "`mlp_breast_cancer_cv.yaml`",
        metric("mlp_breast_cancer_cv", "cv_auc_mean", "cv_auc_std", "test_auc"), _cv,
        "CV AUC ≥ 0.98", each(lambda r: r["cv_auc_mean"] >= 0.98)),
    Row("mlp_diabetes", "Regression", "`mlp_diabetes.yaml`", metric("mlp_diabetes", "test_r2"),
        _diabetes, "≥ 0.40 as the mean over seeds 0–3, each ≥ 0.38",
        lambda runs: (statistics.fmean(col(runs, "test_r2")) >= 0.40
                      and min(col(runs, "test_r2")) >= 0.38), seeds=(0, 1, 2, 3)),
    *(Row(name, topic, f"`{name}.yaml`", _forecast(name),
          shows("test MSE", "ratio", after=" × the last-value baseline's"), "≤ 0.1 ×",
          each(lambda r: r["ratio"] <= 0.1))
      for name, topic in (("lstm_sine", "LSTM forecasting"), ("gru_sine", "GRU forecasting"),
                          ("transformer_sine",
                           "Transformer encoder (self-attention) forecasting"))),
    Row("early_stopping", "Early stopping on an over-parameterized MLP", "`early_stopping.yaml`",
        _early_stopping, _stops, "stops early, best restored",
        each(lambda r: r["best_epoch"] < r["stopped_epoch"] < r["epochs"])),
    Row("autoencoder_digits", "Autoencoder (8-value code)", "`autoencoder_digits.yaml`",
        _autoencoder, _ae_text, "≤ PCA-8", each(lambda r: r["test_recon_mse"] <= r["pca8_mse"])),
    Row("denoising_autoencoder_digits", "Denoising autoencoder (input noise std 0.5)",
        "`denoising_autoencoder_digits.yaml`", _denoising, _dae_text, "< plain autoencoder",
        each(lambda r: r["denoising_mse"] < r["plain_mse"])),
    Row("vae_digits", "Variational autoencoder (ELBO, β = 1)", "`vae_digits.yaml`", _vae,
        _samples("VAE", lambda seeds, runs: "; test reconstruction MSE "
                 + stat(seeds, col(runs, "recon_mse"))),
        "≥ 60%", each(lambda r: r["recognized"] >= 0.6)),
    Row("sparse_autoencoder_digits", "Sparse autoencoder (L1 on a 32-value code)",
        "`sparse_autoencoder_digits.yaml`", _sparse, _sparse_text,
        "sparser than without the penalty (+ 30 points), fits better than the 8-value code",
        each(lambda r: r["sparsity"] >= r["dense_sparsity"] + 0.3
             and r["recon_mse"] < r["dense8_recon_mse"])),
    Row("transfer_from_autoencoder", "Transfer learning: a classifier with 2% of the labels (29), "
        "first layer from a denoising autoencoder trained on the unlabelled inputs "
        "(`label_fraction`, `model.transfer`)", "`transfer_from_autoencoder.yaml` (after "
        "`autoencoder_digits_pretrain.yaml`, registered and taken by name)", _transfer,
        _transfer_text, "beats scratch", each(lambda r: r["pretrained"] > r["scratch"])),
    Row("bert", "BERT: a character-level encoder pre-trained as a masked language model on "
        "the project's docs, fine-tuned to tell which document a snippet comes from (three "
        "classes, 371 training snippets)", "`bert_finetune.yaml` (after `bert_mlm.yaml`, "
        "registered and taken by name)", _bert, _bert_text, "beats scratch",
        each(lambda r: r["pretrained"] > r["scratch"])),
    Row("gan_rings", "GAN (MLP generator and discriminator, non-saturating loss) on 8 Gaussian "
        "modes on a circle", "`gan_rings.yaml`",
        metric("gan_rings", "modes_covered", "high_quality_fraction"), _gan_rings_text,
        "≥ 6 of 8 modes", each(lambda r: r["modes_covered"] >= 6)),
    Row("gan_digits", "GAN on digits (MLP; batch norm in the generator, sigmoid output on "
        "minmax inputs, Adam β₁ = 0.5)", "`gan_digits.yaml`", _gan_digits, _samples("GAN"),
        "≥ 50%, ≥ 8 of 10 digits",
        each(lambda r: r["recognized"] >= 0.5 and r["digits"] >= 8)),
    Row("seq2seq_reverse", "Sequence-to-sequence: LSTM encoder–decoder reversing 20 digits "
        "through a fixed context vector", "`seq2seq_reverse.yaml`", _seq2seq, _plain_seq_text),
    Row("seq2seq_reverse_attention", "… and with (dot-product) attention over the encoder "
        "states", "`seq2seq_reverse_attention.yaml`", _seq2seq, _attention_text,
        "exact match > context-vector model's + 0.2",
        each(lambda r: r["test_exact_match"] > r["plain_test_exact_match"] + 0.2)),
    Row("gpt_corpus", "GPT-style character model (causal self-attention, learned positions) on "
        "the project's docs", "`gpt_corpus.yaml`",
        metric("gpt_corpus", "val_loss", "bigram_val_loss", "test_loss", "bigram_test_loss"),
        _gpt_text, "< bigram baseline",
        each(lambda r: r["val_loss"] < r["bigram_val_loss"]
             and r["test_loss"] < r["bigram_test_loss"])),
    Row("regularization", "L2 + dropout against overfitting",
        "`regularization_l2_dropout.yaml` vs `regularization_none.yaml`", _regularization,
        _reg_text, "narrower gap", each(lambda r: r["gap"] < r["none_gap"])),
    Row("tune_digits_asha", "Hyperparameter search: learning rate, width, depth, dropout of a "
        "digits MLP under ASHA (16 trials, half a CPU each)", "`tune_digits_asha.yaml`",
        _search("tune_digits_asha", "test_accuracy"),
        _search_text("validation accuracy", "the job's test accuracy"),
        "— ([bench/README.md](../bench/README.md): ASHA vs FIFO)", seeds=(0,)),
    Row("tune_breast_cancer_optuna", "Bayesian search (Optuna TPE) scored by 5-fold "
        "cross-validated ROC AUC (12 trials)", "`tune_breast_cancer_optuna.yaml`",
        _search("tune_breast_cancer_optuna", "test_auc"),
        _search_text("CV ROC AUC (mean of 5 folds)", "the best configuration retrained on all "
                     "non-test samples: test AUC", ".4f"), seeds=(0,)),
]
