"""The Yarowsky algorithm: bootstrap a decision list from a few seed labels.

Yarowsky, "Unsupervised Word Sense Disambiguation Rivaling Supervised Methods",
ACL 1995; analysed by Abney, "Understanding the Yarowsky Algorithm",
Computational Linguistics 30(3), 2004. It rests on two regularities: one sense
per collocation (Yarowsky, "One Sense Per Collocation", ARPA HLT 1993), which the
decision list exploits, and one sense per discourse (Gale, Church & Yarowsky,
"One Sense Per Discourse", DARPA Speech and Natural Language Workshop 1992).

Given the occurrences of one word (the pool) and seed labels for a few of them:

    labels <- seeds
    repeat (at most max_iterations times):
        D <- decision list trained from scratch on the labelled occurrences
        for every occurrence x that is not a seed:
            labels[x] <- D(x) if confidence_D(x) >= threshold, else unlabelled
        optionally, one sense per discourse: in every discourse where one sense
            has >= discourse_min_count labelled occurrences and a strict majority
            of them, every non-seed occurrence takes that sense (this both extends
            the labels and overrides dissenting ones)
    until the labels no longer change
    return the decision list trained on the final labels

Seeds keep their labels throughout; every other label is recomputed each
iteration, so it can flip or return to the residual (Yarowsky's "the classifier
is retrained and reapplied to the entire sample"). Decision lists and their
confidence are those of `decision_list`; seeds come from `seeds`. The optional
collocation filter `rule_min_count` > 1 trusts a collocation as a rule only once
it has been seen that many times with its sense (1 = every collocation).

Cautious variant (`rules_per_sense_step` n > 0; Collins & Singer, "Unsupervised
Models for Named Entity Classification", EMNLP/VLC 1999, whose DL-CoTrain adds n
rules per label per round; "Yarowsky-cautious" in Whitney & Sarkar, "Bootstrapping
via Graph Propagation", ACL 2012): in iteration t the
labels come only from the n * t highest-ranked rules of each sense among those
with confidence >= threshold, so the labelled set grows a few rules at a time
instead of taking every confident rule of a list trained on a handful of seeds.
It stops once the labels no longer change and no sense has more confident rules
than its allowance. n = 0 is Yarowsky's algorithm as above.
"""

import dataclasses

import numpy as np

from ssl_jax.yarowsky import decision_list as dl
from ssl_jax.yarowsky.decision_list import UNLABELLED


@dataclasses.dataclass(frozen=True)
class Bootstrap:
    """The result: the final decision list, the pool's final labels (-1 = residual),
    and how many pool occurrences were labelled after each iteration (seeds first)."""
    decision_list: dl.DecisionList
    labels: np.ndarray
    labelled_per_iteration: tuple[int, ...]
    converged: bool


def one_sense_per_discourse(labels: np.ndarray, discourse: np.ndarray, fixed: np.ndarray,
                            num_senses: int, min_count: int) -> np.ndarray:
    """Give every non-`fixed` occurrence of a dominated discourse its dominant sense.

    `discourse` holds integer discourse ids. A discourse is dominated when one sense
    has at least `min_count` of its labelled occurrences and more than all other
    senses together.
    """
    known = labels >= 0
    counts = np.bincount(discourse[known] * num_senses + labels[known],
                         minlength=(discourse.max() + 1) * num_senses).reshape(-1, num_senses)
    top, top_count = counts.argmax(1), counts.max(1)
    dominated = (top_count >= min_count) & (2 * top_count > counts.sum(1))
    relabel = dominated[discourse] & ~fixed
    return np.where(relabel, top[discourse], labels)


def cautious(rules: dl.DecisionList, threshold: float, per_sense: int
             ) -> tuple[dl.DecisionList, bool]:
    """The `per_sense` highest-ranked rules of each sense with confidence >= threshold, and
    whether that left out any such rule."""
    confident = rules.confidence >= threshold
    allowed = np.zeros(len(rules), dtype=bool)
    for sense in np.unique(rules.sense):
        allowed[np.flatnonzero(confident & (rules.sense == sense))[:per_sense]] = True
    return rules.keep(allowed), bool(np.any(confident & ~allowed))


def bootstrap(colloc: dl.Collocations, seed_labels: np.ndarray, discourse: np.ndarray,
              num_senses: int, *, alpha: float, threshold: float, max_iterations: int,
              use_discourse: bool, discourse_min_count: int, rule_min_count: int,
              rules_per_sense_step: int = 0) -> Bootstrap:
    """Run the loop of the module doc on the pool `colloc` from `seed_labels` (-1 = none)."""
    fixed = seed_labels >= 0
    labels = seed_labels
    history = [int(fixed.sum())]
    converged = False
    for iteration in range(1, max_iterations + 1):
        rules = dl.train(colloc, labels, num_senses, alpha, rule_min_count)
        capped = False
        if rules_per_sense_step:
            rules, capped = cautious(rules, threshold, rules_per_sense_step * iteration)
        sense, confidence = dl.classify(rules, colloc)
        new = np.where(fixed, seed_labels, np.where(confidence >= threshold, sense, UNLABELLED))
        if use_discourse:
            new = one_sense_per_discourse(new, discourse, fixed, num_senses, discourse_min_count)
        history.append(int((new >= 0).sum()))
        converged = np.array_equal(new, labels) and not capped
        labels = new
        if converged:
            break
    final = dl.train(colloc, labels, num_senses, alpha, rule_min_count)
    return Bootstrap(final, labels, tuple(history), converged)
