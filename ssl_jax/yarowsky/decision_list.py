"""Collocation features and decision lists (Yarowsky, "Decision Lists for Lexical
Ambiguity Resolution: Application to Accent Restoration in Spanish and French",
ACL 1994).

Collocations of an occurrence (lower-cased; `<s>` / `</s>` stand for the words
before the first and after the last token), written as they appear in rule names
and in hand-given seeds (`config.method.seed_collocations`):

    w0=lines          the ambiguous word's own form (plural, tense, ...)
    -1=safety         the word just before it; `+1=` the word just after it
    -2-1=special safety,  -1+1=a of,  +1+2=of business     adjacent word pairs
    win=telephone     a word within +-`window` tokens (the target excluded)

A decision list has one rule per collocation f seen in the labelled data, for its
most frequent sense s*(f) = argmax_s c(f, s), where c(f, s) counts the labelled
occurrences of sense s that have f. Rules are ranked by the add-alpha smoothed
log-likelihood ratio of s* against all other senses together,

    score(f, s) = log( (c(f, s) + alpha) / (sum_{s' != s} c(f, s') + alpha) ),

which for two senses is Yarowsky's |log P(A | f) / P(B | f)|. A rule for any other
sense s of f would score no higher than s*(f) (smaller numerator, larger
denominator), so it could never be the first match and is left out. Ties are
broken by the larger count c(f, s*), then by first appearance in the data.

Classification uses only the single highest-ranked rule whose collocation the
occurrence has, never a sum of evidence. Its confidence is the smoothed
one-against-rest probability of that rule,

    P(s | f) = (c(f, s) + alpha) / (c(f, s) + alpha + sum_{s' != s} c(f, s') + alpha)
             = sigmoid(score(f, s)),

so a threshold on it is a threshold on the log-likelihood ratio, as in Yarowsky
(1995). An occurrence that matches no rule gets the default rule, the majority
sense of the labelled set, with confidence 0.
"""

import dataclasses

import numpy as np

from ssl_jax.yarowsky.senseval import Instance

KINDS = ("w0", "-1", "+1", "-2-1", "-1+1", "+1+2", "win")
UNLABELLED = -1  # The label of an occurrence whose sense is not (yet) known.
_PAIRS = ("-2-1", "-1+1", "+1+2")
START, END = "<s>", "</s>"


def collocations(tokens: tuple[str, ...], head: int, window: int) -> list[str]:
    """The collocations (module doc) of the word at `tokens[head]`, each once."""
    words = [t.lower() for t in tokens]

    def at(offset):
        i = head + offset
        return START if i < 0 else END if i >= len(words) else words[i]

    found = [f"w0={words[head]}", f"-1={at(-1)}", f"+1={at(1)}",
             f"-2-1={at(-2)} {at(-1)}", f"-1+1={at(-1)} {at(1)}", f"+1+2={at(1)} {at(2)}"]
    nearby = words[max(0, head - window):head] + words[head + 1:head + 1 + window]
    found += [f"win={w}" for w in nearby]
    return list(dict.fromkeys(found))


def is_collocation(name: str) -> bool:
    """Whether `name` is spelt like a collocation of the module doc (for hand-given seeds)."""
    kind, equals, value = name.partition("=")
    if not equals or kind not in KINDS or not value or value != value.lower():
        return False
    return len(value.split(" ")) == (2 if kind in _PAIRS else 1)


@dataclasses.dataclass(frozen=True)
class Collocations:
    """Which collocations each occurrence has: a sparse occurrence x collocation matrix.

    Occurrence i has the collocations `ids[indptr[i]:indptr[i + 1]]` (each once, at
    least `w0`), and `names[id]` spells them. Subsets share `names`.
    """
    names: tuple[str, ...]
    indptr: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def owners(self) -> np.ndarray:
        """The occurrence of each entry of `ids`."""
        return np.repeat(np.arange(len(self)), np.diff(self.indptr))

    def subset(self, rows: np.ndarray) -> "Collocations":
        """The occurrences `rows`, in that order."""
        lengths = np.diff(self.indptr)[rows]
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        # Entry j of row k sits at indptr_old[rows[k]] + j.
        starts = np.repeat(self.indptr[rows] - indptr[:-1], lengths)
        return Collocations(self.names, indptr, self.ids[starts + np.arange(indptr[-1])])

    def id_of(self, name: str) -> int | None:
        try:
            return self.names.index(name)
        except ValueError:
            return None


def index_collocations(instances: list[Instance], window: int) -> Collocations:
    """The collocations of every instance, with one vocabulary for all of them."""
    vocabulary: dict[str, int] = {}
    ids, lengths = [], []
    for instance in instances:
        found = collocations(instance.tokens, instance.head, window)
        ids.extend(vocabulary.setdefault(name, len(vocabulary)) for name in found)
        lengths.append(len(found))
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Collocations(tuple(vocabulary), indptr, np.asarray(ids, dtype=np.int64))


@dataclasses.dataclass(frozen=True)
class DecisionList:
    """Rules best first: `collocation[r]` -> `sense[r]`, seen `count[r]` times with it,
    with `score[r]` and `confidence[r]`; `rank[id]` is the position of collocation id's
    rule (`len(sense)` if it has none); `default` is the sense of the default rule."""
    collocation: np.ndarray
    sense: np.ndarray
    count: np.ndarray
    score: np.ndarray
    confidence: np.ndarray
    rank: np.ndarray
    default: int

    def __len__(self) -> int:
        return len(self.sense)

    def keep(self, mask: np.ndarray) -> "DecisionList":
        """The list of the rules where `mask` (one flag per rule) holds, in the same order."""
        rank = np.full(len(self.rank), int(mask.sum()), dtype=np.int64)
        rank[self.collocation[mask]] = np.arange(int(mask.sum()))
        return DecisionList(self.collocation[mask], self.sense[mask], self.count[mask],
                            self.score[mask], self.confidence[mask], rank, self.default)

    def describe(self, names: tuple[str, ...], sense_names: tuple[str, ...], top: int = 10
                 ) -> list[str]:
        """The first `top` rules, readable."""
        return [f"{names[f]} -> {sense_names[s]} (score {v:.2f}, count {c})" for f, s, v, c in
                zip(self.collocation[:top], self.sense[:top], self.score[:top], self.count[:top])]


def sense_counts(colloc: Collocations, labels: np.ndarray, num_senses: int) -> np.ndarray:
    """`[V, num_senses]` c(f, s) over the labelled occurrences (`labels >= 0`)."""
    entry_labels = labels[colloc.owners()]
    known = entry_labels >= 0
    flat = colloc.ids[known] * num_senses + entry_labels[known]
    return np.bincount(flat, minlength=len(colloc.names) * num_senses).reshape(-1, num_senses)


def train(colloc: Collocations, labels: np.ndarray, num_senses: int, alpha: float,
          min_count: int = 1) -> DecisionList:
    """The decision list of the labelled occurrences (`labels[i] >= 0`, else UNLABELLED),
    from scratch.

    Collocations seen fewer than `min_count` times with their best sense make no rule.
    """
    labels = np.asarray(labels)
    if not np.any(labels >= 0):
        raise ValueError("a decision list needs at least one labelled occurrence")
    counts = sense_counts(colloc, labels, num_senses)
    best = counts.argmax(1)
    best_count = counts.max(1)
    rest = counts.sum(1) - best_count
    score = np.log((best_count + alpha) / (rest + alpha))
    (kept,) = np.nonzero(best_count >= max(min_count, 1))
    order = kept[np.lexsort((kept, -best_count[kept], -score[kept]))]
    rank = np.full(len(colloc.names), len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    default = int(np.bincount(labels[labels >= 0], minlength=num_senses).argmax())
    return DecisionList(
        collocation=order, sense=best[order], count=best_count[order], score=score[order],
        confidence=(best_count[order] + alpha) / (best_count[order] + rest[order] + 2 * alpha),
        rank=rank, default=default)


def classify(decision_list: DecisionList, colloc: Collocations) -> tuple[np.ndarray, np.ndarray]:
    """`(sense, confidence)` of every occurrence from its highest-ranked matching rule."""
    if not len(decision_list):
        return np.full(len(colloc), decision_list.default), np.zeros(len(colloc))
    ranks = decision_list.rank[colloc.ids]
    first = np.minimum.reduceat(ranks, colloc.indptr[:-1])  # Every row has w0, none is empty.
    matched = first < len(decision_list)
    rule = np.where(matched, first, 0)
    sense = np.where(matched, decision_list.sense[rule], decision_list.default)
    return sense, np.where(matched, decision_list.confidence[rule], 0.0)
