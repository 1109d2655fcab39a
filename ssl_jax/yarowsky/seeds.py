"""Seed collocations for the Yarowsky algorithm, and the seed labels they give.

Yarowsky (ACL 1995, step 1) names three ways to seed: words of dictionary
definitions, one defining collocate per sense chosen by hand, or "label salient
corpus collocates" -- a person looks at the word's most salient collocations in
the unlabelled corpus and assigns each a sense. Here:

* hand-given collocations (`config.method.seed_collocations`): no labels seen;
* `salient`: the third way, its human judgement simulated with the labels of a
  few occurrences. Local collocations (kinds `seed_kinds`, seen at least
  `samples` times in the pool) are ranked by salience against the pool's own
  word frequencies: their pointwise mutual information with the target's
  neighbourhood,

      salience(f) = log(c(f) / E(f)),   E(f) = N * prod_{w in f} p(w),

  (c(f): occurrences of the N in the pool that have f; p(w): w's share of all
  context tokens of the pool, each context's two edges `<s>`, `</s>` counted as
  tokens). For each of the `candidates` most salient ones in turn, `samples` of
  its occurrences are drawn (with the run's seed) and their labels read; if at
  least `agreement` of them share a sense, f becomes a seed collocation of that
  sense, otherwise it is rejected. The method sees exactly the labels of those
  draws (at most candidates x samples). Frequency-weighted salience,
  c(f) * log(c(f) / E(f)), picks mostly function-word collocations of the
  majority sense (`+1=of`, `-1=a` for `line`); on a validation split of the
  training pools it was level with PMI at 25 candidates, 1.7 points worse at 15;
* `draw`: `per_sense` labelled occurrences of each sense are drawn, and the
  `collocations_per_sense` highest-ranked rules of each sense in their decision
  list (collocations of `seed_kinds` seen at least twice with the sense) become
  its seed collocations; the method sees per_sense x (number of senses) labels.

An occurrence that has seed collocations of exactly one sense takes that sense;
one with collocations of several senses stays unlabelled. Occurrences whose
labels the method has seen keep those labels.
"""

import collections

import numpy as np

from ssl_jax.evals.splits import labels_per_class_subset
from ssl_jax.yarowsky import decision_list as dl
from ssl_jax.yarowsky.decision_list import UNLABELLED

_SEEN_TWICE = 2


def label_by_collocations(colloc: dl.Collocations, seeds: dict[int, list[int]]) -> np.ndarray:
    """Each occurrence's sense if it has seed collocations of exactly one sense, else -1."""
    seed_sense = np.full(len(colloc.names), UNLABELLED, dtype=np.int64)
    for sense, ids in seeds.items():
        seed_sense[ids] = sense
    entry_sense = seed_sense[colloc.ids]
    hits = entry_sense >= 0
    owners = colloc.owners()[hits]
    # Seeded when all its hits agree: their smallest and largest sense are the same.
    low = np.full(len(colloc), np.iinfo(np.int64).max)
    high = np.full(len(colloc), UNLABELLED, dtype=np.int64)
    np.minimum.at(low, owners, entry_sense[hits])
    np.maximum.at(high, owners, entry_sense[hits])
    return np.where(high == low, high, UNLABELLED)


def word_probabilities(contexts: list[tuple[str, ...]]) -> dict[str, float]:
    """Each lower-cased word's share of all tokens of `contexts`, with each context's
    two edges counted as the tokens `<s>` and `</s>`."""
    counts = collections.Counter(t.lower() for tokens in contexts for t in tokens)
    counts[dl.START] += len(contexts)
    counts[dl.END] += len(contexts)
    total = sum(counts.values())
    return {word: count / total for word, count in counts.items()}


def salient_collocations(colloc: dl.Collocations, probabilities: dict[str, float],
                         kinds: tuple[str, ...], min_count: int) -> list[int]:
    """Collocation ids of `kinds` seen in at least `min_count` occurrences, most salient
    first (module doc; ties: first appearance)."""
    counts = np.bincount(colloc.ids, minlength=len(colloc.names))
    ranked = []
    for f in np.flatnonzero(counts >= min_count):
        kind, _, words = colloc.names[f].partition("=")
        if kind in kinds:
            expected = len(colloc) * np.prod([probabilities[w] for w in words.split(" ")])
            ranked.append((-np.log(counts[f] / expected), f))
    return [int(f) for _, f in sorted(ranked)]


def judged_seeds(colloc: dl.Collocations, candidates: list[int], gold: np.ndarray,
                 samples: int, agreement: int, seed: int
                 ) -> tuple[dict[int, list[int]], np.ndarray]:
    """`(seeds, seen)`: the candidates whose `samples` drawn occurrences have at least
    `agreement` labels of one sense, by sense, and the occurrences whose labels
    (`gold`) were read."""
    rng = np.random.default_rng(seed)
    owners = colloc.owners()
    seeds, seen = collections.defaultdict(list), []
    for f in candidates:
        occurrences = owners[colloc.ids == f]
        drawn = rng.choice(occurrences, size=min(samples, len(occurrences)), replace=False)
        seen.append(drawn)
        votes = np.bincount(gold[drawn])
        if votes.max() >= agreement:
            seeds[int(votes.argmax())].append(f)
    return dict(seeds), np.unique(np.concatenate(seen)) if seen else np.zeros(0, np.int64)


def drawn_seeds(colloc: dl.Collocations, gold: np.ndarray, num_senses: int, per_sense: int,
                collocations_per_sense: int, alpha: float, kinds: tuple[str, ...], seed: int
                ) -> tuple[dict[int, list[int]], np.ndarray]:
    """`(seeds, seen)` of the `draw` way (module doc)."""
    seen = labels_per_class_subset(gold, per_sense, seed)
    labels = np.full(len(gold), UNLABELLED)
    labels[seen] = gold[seen]
    tiny = dl.train(colloc, labels, num_senses, alpha, min_count=_SEEN_TWICE)
    allowed = np.array([colloc.names[f].partition("=")[0] in kinds for f in tiny.collocation],
                       dtype=bool)
    seeds = {sense: [int(f) for f in tiny.collocation[allowed & (tiny.sense == sense)]
                     [:collocations_per_sense]] for sense in range(num_senses)}
    return seeds, seen
