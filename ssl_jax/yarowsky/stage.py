"""The `yarowsky` stage: word-sense disambiguation of the Senseval words, test accuracy.

For each word of `config.input.words`:

1. Split its instances into a training pool and a test split (`test_fraction` of
   them), whole discourses at a time (`senseval` module doc), with `config.seed`.
   `config.input.evaluate_on="validation"` instead splits the training pool again
   the same way and reports on that held-out part; the test split is then never
   read (for choosing hyperparameters).
2. Seeds (`seeds` module doc), with `config.seed`: hand-given collocations
   (`config.method.seed_collocations = {sense: [collocation, ...]}`, spelt as in
   `decision_list`; no labels seen; a word none of whose senses is listed falls
   back to the automatic way), else `config.method.seed_method`:
   `salient` (salient local collocations, each judged by the labels of
   `salient_samples` of its occurrences: at most salient_candidates x
   salient_samples labels, 25 x 5 = 125 by default) or `draw`
   (`seed_labels_per_sense` labels of each sense, e.g. 5 x 6 = 30 for `line`).
   The labels read are the only ones the method sees; `yarowsky_details.json`
   records their number per word.
3. Bootstrap on the pool (`algorithm.bootstrap`), its labels ignored; the final
   decision list labels the test split.

Rows of the result (test accuracy per word):
    yarowsky                    the bootstrapped decision list
    seed_only                   a decision list trained on the seed labels alone
    same_labels_decision_list   a decision list trained on as many pool labels as
                                the method read, drawn at random (`config.seed`)
    most_frequent_sense         the majority sense of the pool's labels
    supervised_decision_list    a decision list trained on all the pool's labels
The first three see as many labels as the method (the third is left out when it
reads none, with hand-given seeds); the last two see every pool label.

Writes `workdir/results.json` (the rows) and `workdir/yarowsky_details.json`
(per word: seeds, labels seen, labelled pool fraction per iteration, top rules)
and prints the rows as a Markdown table.
"""

import json
import pathlib

import ml_collections
import numpy as np
from absl import logging

from ssl_jax.yarowsky import algorithm, seeds, senseval
from ssl_jax.yarowsky import decision_list as dl

ROWS = ("yarowsky", "seed_only", "same_labels_decision_list", "most_frequent_sense",
        "supervised_decision_list")
SEED_METHODS = ("salient", "draw")
EVALUATE_ON = ("test", "validation")


def _check(condition: bool, field: str, value, expected: str):
    if not condition:
        raise ValueError(f"config.{field}={value!r}: {expected}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_config(config: ml_collections.ConfigDict):
    """ValueError (FileNotFoundError for missing data) naming the first bad field."""
    m, i = config.method, config.input
    _check(m.name == "yarowsky", "method.name", m.name, "expected 'yarowsky'")
    _check(i.dataset == "senseval", "input.dataset", i.dataset, "expected 'senseval'")
    words = tuple(i.words)
    _check(len(words) > 0 and len(set(words)) == len(words), "input.words", words,
           "expected distinct words")
    for word in words:
        _check(word in senseval.WORDS, "input.words", word,
               f"expected one of {list(senseval.WORDS)}")
    _check(0.0 < i.test_fraction < 1.0, "input.test_fraction", i.test_fraction,
           "must be in (0, 1)")
    _check(i.evaluate_on in EVALUATE_ON, "input.evaluate_on", i.evaluate_on,
           f"expected one of {list(EVALUATE_ON)}")
    _check(m.seed_method in SEED_METHODS, "method.seed_method", m.seed_method,
           f"expected one of {list(SEED_METHODS)}")
    for field, minimum in (("window", 1), ("max_iterations", 1), ("rule_min_count", 1),
                           ("rules_per_sense_step", 0), ("discourse_min_count", 1),
                           ("discourse_gap", 0), ("salient_candidates", 1),
                           ("salient_samples", 1), ("salient_agreement", 1),
                           ("seed_labels_per_sense", 1), ("seed_collocations_per_sense", 1)):
        value = m[field]
        _check(_is_int(value) and value >= minimum, f"method.{field}", value,
               f"must be an integer >= {minimum}")
    _check(m.salient_agreement <= m.salient_samples, "method.salient_agreement",
           m.salient_agreement, f"must be <= config.method.salient_samples={m.salient_samples}")
    _check(len(m.seed_kinds) > 0, "method.seed_kinds", m.seed_kinds, "expected some kinds")
    for kind in m.seed_kinds:
        _check(kind in dl.KINDS, "method.seed_kinds", kind, f"expected one of {list(dl.KINDS)}")
    _check(m.alpha > 0.0, "method.alpha", m.alpha, "must be > 0")
    _check(0.0 < m.threshold <= 1.0, "method.threshold", m.threshold, "must be in (0, 1]")
    known = {sense for word in words for sense in senseval.SENSES[word]}
    for sense, names in m.seed_collocations.items():
        field = f"method.seed_collocations.{sense}"
        _check(sense in known, field, sense,
               f"not a sense of config.input.words (senses: {sorted(known)})")
        _check(not isinstance(names, str) and len(names) > 0, field, names,
               "expected a non-empty list of collocations")
        for name in names:
            _check(dl.is_collocation(name), field, name,
                   f"not a collocation: expected KIND=word(s), KIND one of {list(dl.KINDS)}, "
                   "lower case (see ssl_jax.yarowsky.decision_list)")
    data_dir = pathlib.Path(i.data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"config.input.data_dir={i.data_dir!r}: no such directory")
    if not senseval.archive_path(data_dir).is_file():
        raise FileNotFoundError(f"config.input.data_dir={i.data_dir!r}: no "
                                f"{senseval.ARCHIVE} in it")


def split_by_discourse(discourses: list[str], fraction: float, seed: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """`(kept, held_out)` sorted indices: whole discourses, drawn in a random order
    (`seed`), are held out until they hold at least `fraction` of the instances."""
    _, group = np.unique(np.asarray(discourses), return_inverse=True)
    order = np.random.default_rng(seed).permutation(group.max() + 1)
    sizes = np.bincount(group)[order]
    taken = order[:np.searchsorted(np.cumsum(sizes), fraction * len(group)) + 1]
    held_out = np.isin(group, taken)
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)


def _seed_labels(config, instances: list, colloc: dl.Collocations, gold: np.ndarray,
                 sense_names: tuple) -> tuple[np.ndarray, dict]:
    """The pool's seed labels (-1 = none) and a record of how they were made."""
    m = config.method
    kinds = tuple(m.seed_kinds)
    given = {sense_names.index(s): names for s, names in m.seed_collocations.items()
             if s in sense_names}
    if given:
        seeds_by_sense = {s: [f for f in map(colloc.id_of, names) if f is not None]
                          for s, names in given.items()}
        seen = np.zeros(0, dtype=np.int64)
    elif m.seed_method == "salient":
        probabilities = seeds.word_probabilities([x.tokens for x in instances])
        candidates = seeds.salient_collocations(colloc, probabilities, kinds, m.salient_samples)
        seeds_by_sense, seen = seeds.judged_seeds(
            colloc, candidates[:m.salient_candidates], gold, m.salient_samples,
            m.salient_agreement, config.seed)
    else:
        try:
            seeds_by_sense, seen = seeds.drawn_seeds(
                colloc, gold, len(sense_names), m.seed_labels_per_sense,
                m.seed_collocations_per_sense, m.alpha, kinds, config.seed)
        except ValueError as error:
            raise ValueError(f"config.method.seed_labels_per_sense={m.seed_labels_per_sense}: "
                             f"{error}") from error
    labels = seeds.label_by_collocations(colloc, seeds_by_sense)
    labels[seen] = gold[seen]
    seeded = labels >= 0
    if not seeded.any():
        raise ValueError(f"{instances[0].word}: the seeds label no instance of the training "
                         "pool (config.method.seed_collocations, config.method.seed_method)")
    record = {"labels_seen": len(seen),
              "seed_collocations": {sense_names[s]: [colloc.names[f] for f in ids]
                                    for s, ids in seeds_by_sense.items()},
              "seeded": int(seeded.sum()),
              "seed_label_accuracy": float(np.mean(labels[seeded] == gold[seeded]))}
    return labels, record


def evaluate_word(config: ml_collections.ConfigDict, word: str) -> tuple[dict, dict]:
    """`({row: accuracy}, details)` of one word (module doc)."""
    m, i = config.method, config.input
    instances = senseval.load(i.data_dir, word, m.discourse_gap)
    sense_names = tuple(sorted({x.sense for x in instances}))
    gold = np.array([sense_names.index(x.sense) for x in instances])
    discourses = [x.discourse for x in instances]
    pool, held_out = split_by_discourse(discourses, i.test_fraction, config.seed)
    if i.evaluate_on == "validation":
        kept, validation = split_by_discourse([discourses[k] for k in pool], i.test_fraction,
                                              config.seed)
        pool, held_out = pool[kept], pool[validation]
    colloc = dl.index_collocations(instances, m.window)
    pool_colloc, eval_colloc = colloc.subset(pool), colloc.subset(held_out)
    num_senses = len(sense_names)

    def accuracy(senses: np.ndarray) -> float:
        return float(np.mean([sense_names[s] in instances[k].senses
                              for s, k in zip(senses, held_out)]))

    def list_accuracy(labels: np.ndarray) -> float:
        rules = dl.train(pool_colloc, labels, num_senses, m.alpha, m.rule_min_count)
        return accuracy(dl.classify(rules, eval_colloc)[0])

    seed_labels, details = _seed_labels(config, [instances[k] for k in pool], pool_colloc,
                                        gold[pool], sense_names)
    _, discourse_index = np.unique(np.asarray(discourses)[pool], return_inverse=True)
    result = algorithm.bootstrap(
        pool_colloc, seed_labels, discourse_index, num_senses, alpha=m.alpha,
        threshold=m.threshold, max_iterations=m.max_iterations,
        use_discourse=m.one_sense_per_discourse, discourse_min_count=m.discourse_min_count,
        rule_min_count=m.rule_min_count, rules_per_sense_step=m.rules_per_sense_step)
    majority = np.bincount(gold[pool], minlength=num_senses).argmax()
    rows = {
        "yarowsky": accuracy(dl.classify(result.decision_list, eval_colloc)[0]),
        "seed_only": list_accuracy(seed_labels),
        "most_frequent_sense": accuracy(np.full(len(held_out), majority)),
        "supervised_decision_list": list_accuracy(gold[pool]),
    }
    if details["labels_seen"]:  # Hand-given seeds read no labels: no such baseline.
        same_labels = np.full(len(pool), dl.UNLABELLED)
        drawn = np.random.default_rng(config.seed).choice(len(pool), details["labels_seen"],
                                                          replace=False)
        same_labels[drawn] = gold[pool][drawn]
        rows["same_labels_decision_list"] = list_accuracy(same_labels)
    labelled = result.labels >= 0
    details.update(
        pool=len(pool), evaluated_on=f"{i.evaluate_on} ({len(held_out)} instances)",
        labelled_per_iteration=list(result.labelled_per_iteration),
        converged=result.converged,
        final_labelled_fraction=float(labelled.mean()),
        final_label_accuracy=float(np.mean(result.labels[labelled] == gold[pool][labelled])),
        top_rules=result.decision_list.describe(colloc.names, sense_names))
    return rows, details


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Evaluate every configured word; returns `{row: {word: accuracy}}` (module doc)."""
    from ssl_jax import stages  # Only for its table; importing it loads the neural stack.

    results = {row: {} for row in ROWS}
    details = {}
    for word in config.input.words:
        rows, details[word] = evaluate_word(config, word)
        for row, value in rows.items():
            results[row][word] = value
        logging.info("%s: %s; %s", word, rows, details[word])
    results = {row: by_word for row, by_word in results.items() if by_word}
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
    (workdir / "yarowsky_details.json").write_text(json.dumps(details, indent=2))
    print(f"{config.input.evaluate_on} accuracy (%):\n" + stages.format_table(results),
          flush=True)
    return results
