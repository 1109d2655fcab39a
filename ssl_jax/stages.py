"""The stages a config names: pretrain, then knn / linear_probe / finetune / self_train.

    workdir/pretrain/     checkpoints/, metrics.jsonl, tensorboard/
    workdir/finetune/     the same, for the fine-tuned classifier
    workdir/self_train/   the same, for the self-trained (FixMatch) classifier
    workdir/results.json  every downstream number, merged across stages

The downstream stages restore the pretrained encoder from its Orbax checkpoint
(`config.eval.pretrained_checkpoints`, default `workdir/pretrain/checkpoints`),
so they can run in a later process, or on another machine, than the pretraining.
Each representation is compared with the baselines of `config.eval.baselines`:
`random_init` (the same encoder before pretraining) and the raw input, `raw_pixels`
for images or `bag_of_tokens` (normalised token counts) for text; fine-tuning is
compared with training the same network from scratch on the same labels, and so is
self-training, which also learns from the pseudo-labels of the unlabelled images.
A language model (BERT, GPT) may instead, or as well, be evaluated by `lm_eval`:
its pretext loss on the test split.
"""

import functools
import json
import pathlib

import jax
import ml_collections
import numpy as np

from ssl_jax import checkpoint, train
from ssl_jax.data import loader, sources
from ssl_jax.evals import features, knn_accuracies, labels_per_class_subset, linear_probe
from ssl_jax.methods import language_model

STAGES = ("pretrain", "knn", "linear_probe", "finetune", "self_train", "lm_eval", "yarowsky")
BASELINES = ("random_init", "raw_pixels", "bag_of_tokens")


def budget_name(per_class: int) -> str:
    return "all labels" if per_class <= 0 else f"{per_class}/class"


def pretrained_checkpoints(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> pathlib.Path:
    path = config.eval.pretrained_checkpoints
    return pathlib.Path(path) if path else workdir / "pretrain" / "checkpoints"


def pretrain(config, workdir: pathlib.Path,
             dataset: sources.ArrayDataset | None) -> train.Run:
    """Stage 1: the pretext task, no labels reach the encoder."""
    return train.train(config, workdir / "pretrain", dataset)


def load_pretrained(config, workdir: pathlib.Path, dataset: sources.ArrayDataset
                    ) -> tuple[train.Run, dict]:
    """The pretraining run's method and its latest checkpointed variables."""
    run = train.build(config, dataset)
    template = train.init_state(run)
    state = checkpoint.load_latest(pretrained_checkpoints(config, workdir), template)
    return run, state.variables()


def bag_of_tokens(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """`[N, vocab_size]` relative frequency of each token id in each sequence, padding
    (id 0) excluded: the text counterpart of raw pixels."""
    counts = np.zeros((len(tokens), vocab_size), np.float32)
    rows = np.repeat(np.arange(len(tokens)), tokens.shape[1])
    np.add.at(counts, (rows, tokens.reshape(-1)), 1.0)
    counts[:, 0] = 0.0
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)


def raw_inputs(name: str, dataset: sources.ArrayDataset, vocab_size: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Train/test raw-input features: flattened pixels in [0, 1], or bags of tokens."""
    wanted = "raw_pixels" if dataset.input_key == "image" else "bag_of_tokens"
    if name != wanted:
        raise ValueError(f"config.eval.baselines has {name!r}, but inputs of kind "
                         f"{dataset.input_key!r} have the raw-input baseline {wanted!r}")
    if name == "raw_pixels":
        return tuple(x.reshape(len(x), -1).astype(np.float32) / 255.0
                     for x in (dataset.train_inputs, dataset.test_inputs))
    return tuple(bag_of_tokens(x, vocab_size) for x in (dataset.train_inputs, dataset.test_inputs))


def representations(config, workdir: pathlib.Path, dataset: sources.ArrayDataset) -> dict:
    """Train/test features of the pretrained encoder and of each baseline."""
    run, variables = load_pretrained(config, workdir, dataset)
    encoders = {"ssl": variables}
    if "random_init" in config.eval.baselines:
        encoders["random_init"] = train.init_state(run).variables()
    out = {}
    for name, encoder in encoders.items():
        out[name] = tuple(
            features.extract(run.method.features, encoder, inputs, run.mesh,
                             config.eval.batch_size)
            for inputs in (dataset.train_inputs, dataset.test_inputs))
    for name in ("raw_pixels", "bag_of_tokens"):
        if name in config.eval.baselines:
            out[name] = raw_inputs(name, dataset, config.model.vocab_size)
    return out


def frozen_feature_evals(config, workdir: pathlib.Path, dataset: sources.ArrayDataset,
                         protocols: tuple[str, ...]) -> dict:
    """kNN and/or linear-probe accuracy per representation and label budget."""
    results = {}
    feats = representations(config, workdir, dataset)
    for per_class in config.eval.labels_per_class:
        labelled = labels_per_class_subset(dataset.train_labels, per_class, config.seed)
        y_train = dataset.train_labels[labelled]
        for name, (x_train, x_test) in feats.items():
            row = results.setdefault(name, {})
            budget = budget_name(per_class)
            if "knn" in protocols:
                accuracies = knn_accuracies(
                    x_train[labelled], y_train, x_test, dataset.test_labels,
                    num_classes=dataset.num_classes, ks=tuple(config.eval.knn_k),
                    temperature=config.eval.knn_temperature)
                for k, accuracy in accuracies.items():
                    row[f"kNN k={k} ({budget})"] = accuracy
            if "linear_probe" in protocols:
                probe = linear_probe(
                    x_train[labelled], y_train, x_test, dataset.test_labels,
                    num_classes=dataset.num_classes, weight_decays=config.eval.probe_weight_decays,
                    val_fraction=config.eval.probe_val_fraction, seed=config.seed,
                    steps=config.eval.probe_steps)
                row[f"linear ({budget})"] = probe["accuracy"]
    return results


def downstream_config(config: ml_collections.ConfigDict, method: dict,
                      section: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The pretraining config turned into a classifier's run: `method`, and the batch
    size, optimizer and schedule of `section` (`config.finetune` or `config.self_train`)."""
    derived = ml_collections.ConfigDict(config.to_dict())
    derived.method = ml_collections.ConfigDict(method)
    derived.optim = section.optim
    derived.schedule = section.schedule
    derived.input.batch_size = section.batch_size
    derived.input.train_limit = 0
    derived.lock()
    return derived


def finetune_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The pretraining config turned into a supervised run with `config.finetune`'s settings."""
    method = dict(name="supervised", view=config.finetune.view.to_dict())
    return downstream_config(config, method, config.finetune)


def self_train_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The pretraining config turned into a FixMatch run with `config.self_train`'s settings."""
    st = config.self_train
    method = dict(name="fixmatch", weak_view=st.weak_view.to_dict(),
                  strong_view=st.strong_view.to_dict(), threshold=st.threshold,
                  unlabeled_weight=st.unlabeled_weight, unlabeled_ratio=st.unlabeled_ratio)
    return downstream_config(config, method, st)


def train_classifiers(config, run_config: ml_collections.ConfigDict, workdir: pathlib.Path,
                      dataset: sources.ArrayDataset, section: ml_collections.ConfigDict,
                      stage: str, **train_kwargs) -> dict:
    """Train `run_config`'s classifier on `section.labels_per_class` labels per class
    from the pretrained backbone (row "ssl", in `workdir/<stage>`) and, with
    `section.from_scratch_baseline`, from random init (row "from_scratch", in
    `workdir/<stage>_scratch`); their test accuracies, in the column "<stage> (<budget>)"."""
    labelled = labels_per_class_subset(dataset.train_labels, section.labels_per_class,
                                       config.seed)
    few = dataset.subset_train(labelled)
    pretrain_run, pretrained = load_pretrained(config, workdir, dataset)
    inits = {"ssl": pretrain_run.method.backbone_variables(pretrained)}
    if section.from_scratch_baseline:
        inits["from_scratch"] = None
    column = f"{stage.replace('_', '-')} ({budget_name(section.labels_per_class)})"
    results = {}
    for name, init in inits.items():
        run = train.train(run_config, workdir / (stage if init else f"{stage}_scratch"), few,
                          init_backbone=init, **train_kwargs)
        logits = features.extract(run.method.logits, run.state.variables(), dataset.test_inputs,
                                  run.mesh, config.eval.batch_size)
        results[name] = {column: float(np.mean(logits.argmax(-1) == dataset.test_labels))}
    return results


def finetune(config, workdir: pathlib.Path, dataset: sources.ArrayDataset) -> dict:
    """Fine-tune the pretrained backbone on few labels; baseline: the same from scratch."""
    return train_classifiers(config, finetune_config(config), workdir, dataset,
                             config.finetune, "finetune")


def self_train(config, workdir: pathlib.Path, dataset: sources.ArrayDataset) -> dict:
    """FixMatch (`methods.fixmatch`) on few labels, with every training image's pixels as
    the unlabelled set, from the pretrained backbone; baseline: the same from scratch.
    Set against `finetune` (the same labels, no unlabelled images), it shows what the
    pseudo-labels add."""
    return train_classifiers(config, self_train_config(config), workdir, dataset,
                             config.self_train, "self_train",
                             unlabeled_inputs=dataset.train_inputs)


def lm_eval(config, workdir: pathlib.Path, dataset: sources.ArrayDataset) -> dict:
    """A language model's pretext loss (BERT, GPT) over the whole test split."""
    run, variables = load_pretrained(config, workdir, dataset)
    loss = language_model.validation_loss(run.method, variables, dataset.test_inputs, run.mesh,
                                          config.eval.batch_size)
    return {"ssl": {"val loss (nats/token)": loss}}


def merge(results: dict, new: dict) -> dict:
    for name, row in new.items():
        results.setdefault(name, {}).update(row)
    return results


def format_table(results: dict) -> str:
    """A Markdown table: one row per representation, one column per metric (accuracies
    in %, losses as they are)."""
    columns = list(dict.fromkeys(col for row in results.values() for col in row))
    lines = ["| representation | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for name, row in results.items():
        cells = [("-" if c not in row else f"{row[c]:.4f}" if "loss" in c
                  else f"{100 * row[c]:.1f}") for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_stages(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Run the stages of `config.stages` in order; returns (and saves) the results.

    A streamed dataset (TFDS) is pretrained on from its tf.data stream; the
    downstream stages, and every stage of an in-memory source, read the dataset as
    arrays (`sources.load`, once), which needs images of one fixed size.
    """
    workdir = pathlib.Path(workdir)
    if config.stages == ("yarowsky",):  # Not a neural method: no encoder, its own evaluation.
        from ssl_jax.yarowsky import stage as yarowsky_stage

        return yarowsky_stage.run(config, workdir)
    arrays = functools.cache(lambda: sources.load(config.input))
    results = {}
    protocols = tuple(s for s in config.stages if s in ("knn", "linear_probe"))
    for stage in config.stages:
        if stage == "pretrain":
            pretrain(config, workdir, None if loader.streamed(config) else arrays())
        elif stage == "finetune":
            merge(results, finetune(config, workdir, arrays()))
        elif stage == "self_train":
            merge(results, self_train(config, workdir, arrays()))
        elif stage == "lm_eval":
            merge(results, lm_eval(config, workdir, arrays()))
        elif stage == protocols[0]:
            merge(results, frozen_feature_evals(config, workdir, arrays(), protocols))
    if results and jax.process_index() == 0:
        (workdir / "results.json").write_text(json.dumps(results, indent=2))
        print("test accuracy (%), losses in nats/token:\n" + format_table(results), flush=True)
    return results
