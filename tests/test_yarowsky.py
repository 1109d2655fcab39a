"""The Yarowsky algorithm: decision lists by hand, the reader, the loop's invariants, a real run."""

import json
import pathlib

import numpy as np
import pytest

from ssl_jax.config import load_config_file
from ssl_jax.data.formats import DataError
from ssl_jax.yarowsky import algorithm, seeds, senseval, stage
from ssl_jax.yarowsky import decision_list as dl

REPO = pathlib.Path(__file__).resolve().parents[1]


def yarowsky_config(shared_data: pathlib.Path | None = None, arg: str | None = None):
    config = load_config_file(str(REPO / "configs" / "yarowsky_senseval.py"), arg)
    if shared_data is not None:
        config.input.data_dir = str(shared_data / "text")
    return config


def made_up(rows: list[list[int]], num_names: int) -> dl.Collocations:
    """Collocations `c0`, `c1`, ... given by id, one list per occurrence."""
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    return dl.Collocations(tuple(f"c{k}" for k in range(num_names)), indptr,
                           np.array([f for r in rows for f in r], dtype=np.int64))


# --- Collocations and decision lists ---------------------------------------------------------

def test_collocations_of_a_sentence():
    tokens = ("The", "phone", "line", "was", "dead", ".")
    assert dl.collocations(tokens, 2, window=2) == [
        "w0=line", "-1=phone", "+1=was", "-2-1=the phone", "-1+1=phone was", "+1+2=was dead",
        "win=the", "win=phone", "win=was", "win=dead"]
    # Sentence edges, and a window word seen twice listed once.
    assert dl.collocations(("line", "line"), 0, window=3) == [
        "w0=line", "-1=<s>", "+1=line", "-2-1=<s> <s>", "-1+1=<s> line", "+1+2=line </s>",
        "win=line"]
    assert dl.is_collocation("-1+1=phone was") and dl.is_collocation("win=telephone")
    assert not dl.is_collocation("+1=Rope") and not dl.is_collocation("-1+1=phone")
    assert not dl.is_collocation("rope") and not dl.is_collocation("+3=rope")


def test_decision_list_scores_match_a_hand_computation():
    """Five occurrences, three senses, alpha = 0.1:
        c0: senses 0, 0, 1, 0 -> c(c0, 0) = 3, others 1: score log(3.1 / 1.1)
        c1: senses 0, 0, 2    -> c(c1, 0) = 2, others 1: score log(2.1 / 1.1)
        c2: senses 1, 2       -> tie, sense 1 (lower id), 1 vs 1: score log(1.1 / 1.1) = 0
    """
    colloc = made_up([[0, 1], [0, 1], [0, 2], [1, 2], [0]], 3)
    labels = np.array([0, 0, 1, 2, 0])
    rules = dl.train(colloc, labels, num_senses=3, alpha=0.1)
    np.testing.assert_array_equal(rules.collocation, [0, 1, 2])
    np.testing.assert_array_equal(rules.sense, [0, 0, 1])
    np.testing.assert_allclose(rules.score, [np.log(3.1 / 1.1), np.log(2.1 / 1.1), 0.0])
    np.testing.assert_allclose(rules.confidence, [3.1 / 4.2, 2.1 / 3.2, 0.5])
    np.testing.assert_allclose(rules.confidence, 1 / (1 + np.exp(-rules.score)))
    assert rules.default == 0  # Three of the five labels.
    # min_count drops the rules seen fewer times with their sense.
    np.testing.assert_array_equal(
        dl.train(colloc, labels, 3, 0.1, min_count=2).collocation, [0, 1])
    # Unlabelled occurrences (-1) are not counted.
    partial = dl.train(colloc, np.array([0, 0, -1, -1, -1]), 3, 0.1)
    np.testing.assert_allclose(partial.score, [np.log(2.1 / 0.1)] * 2)


def test_classification_uses_only_the_highest_ranked_matching_rule():
    """c0 -> sense 0 (4 to 0, score log 41 = 3.71) outranks c1 and c2 -> sense 1 (3 to 0 each,
    log 31 = 3.43). An occurrence with all three is sense 0 by the first rule, although
    summing the evidence (3.43 + 3.43 against 3.71) would say sense 1."""
    colloc = made_up([[0]] * 4 + [[1]] * 3 + [[2]] * 3 + [[0, 1, 2], [3]], 4)
    labels = np.array([0] * 4 + [1] * 6 + [-1, -1])
    rules = dl.train(colloc, labels, 2, alpha=0.1)
    evidence = np.zeros(2)
    np.add.at(evidence, rules.sense, rules.score)
    assert evidence.argmax() == 1
    sense, confidence = dl.classify(rules, colloc)
    assert sense[10] == 0 and confidence[10] == pytest.approx(4.1 / 4.2)
    # No matching rule: the default (majority of the labelled set) with confidence 0.
    assert sense[11] == 1 and confidence[11] == 0.0


def test_subset_keeps_each_rows_collocations():
    colloc = made_up([[0, 1], [2], [1, 3, 0]], 4)
    part = colloc.subset(np.array([2, 0]))
    np.testing.assert_array_equal(part.indptr, [0, 3, 5])
    np.testing.assert_array_equal(part.ids, [1, 3, 0, 0, 1])
    np.testing.assert_array_equal(part.owners(), [0, 0, 0, 1, 1])


# --- The reader ------------------------------------------------------------------------------

SAMPLE = b"""<corpus lang="en">
<lexelt item="line-n">
<instance id="line-n.w7_010:888:">
<answer instance="line-n.w7_010:888:" senseid="cord"/>
<answer instance="line-n.w7_010:888:" senseid="product"/>
<context>
<s snum="3"/> <wf pos="NN">safety</wf> <head> <wf pos="NNS">lines</wf></head>
 <compound> <wf pos="JJ">a-frame</wf> </compound> <wf pos="NN">AT&T</wf> <wf pos=".">.</wf>
</context>
</instance>
<instance id="line-n.w7_010:895:">
<answer instance="line-n.w7_010:895:" senseid="phone"/>
<context> <head> <wf pos="NN">line</wf></head> </context>
</instance>
</lexelt>
</corpus>
"""


def test_reader_parses_the_real_format():
    first, second = senseval.parse(SAMPLE, "sample.pos", "line", discourse_gap=10)
    assert first.id == "line-n.w7_010:888:" and first.word == "line"
    assert first.senses == ("cord", "product") and first.sense == "cord"
    assert first.tokens == ("safety", "lines", "a-frame", "AT&T", ".")
    assert first.head == 1 and second.tokens == ("line",) and second.head == 0
    # Positions 888 and 895 of file w7_010 are 7 apart: one discourse.
    assert first.discourse == second.discourse == "w7_010@888"


@pytest.mark.parametrize("content,message", [
    (SAMPLE.replace(b"<head> <wf pos=\"NN\">line</wf></head>", b""),
     "sample.pos, instance 'line-n.w7_010:895:': no <head>"),
    (SAMPLE.replace(b'senseid="phone"', b""),
     "instance 'line-n.w7_010:895:': needs at least one <answer"),
    (SAMPLE.replace(b"</context>\n</instance>\n</lexelt>", b"</instance>\n</lexelt>"),
     "sample.pos: not well-formed XML at line"),
])
def test_reader_errors_name_the_file_and_instance(content, message):
    with pytest.raises(DataError, match=message):
        senseval.parse(content, "sample.pos", "line", discourse_gap=10)


def test_discourses_chain_nearby_positions_of_one_source():
    ids = ["line-n.w7_010:888:", "line-n.w7_010:898:", "line-n.w7_010:950:",
           "line-n.w7_011:890:", "line-n.art} aphb 04400788:", "serve-v.aphb_04400795_12",
           "interest-n.int1", "hard-a.sjm-274_1:"]
    assert senseval.discourse_ids(ids, gap=10) == [
        "w7_010@888", "w7_010@888", "w7_010@950", "w7_011@890", "aphb_044@788",
        "aphb_044@788", "interest-n.int1", "hard-a.sjm-274_1:"]


def test_real_files(shared_data):
    counts = {"hard": 4333, "interest": 2368, "line": 4146, "serve": 4378}
    for word, count in counts.items():
        instances = senseval.load(shared_data / "text", word)
        assert len(instances) == count
        assert {x.sense for x in instances} == set(senseval.SENSES[word])
        assert all(x.tokens[x.head].lower().startswith(word[:4]) for x in instances)
    line = senseval.load(shared_data / "text", "line")
    assert sum(x.sense == "product" for x in line) == 2217
    assert len({x.discourse for x in line}) == 3608  # 4146 instances, gap 10.


# --- The algorithm ---------------------------------------------------------------------------

def test_seeds_stay_fixed_while_other_labels_follow_the_list():
    """Five seeds say c0 -> 0, one seed says c0 -> 1. The list (c0 -> 0, confidence 5.1/6.2
    = 0.82 >= 0.8) labels the four unlabelled c0 occurrences 0 and leaves the dissenting
    seed at 1, in every iteration."""
    colloc = made_up([[0]] * 10 + [[1]], 2)
    seed_labels = np.array([0] * 5 + [1] + [-1] * 5)
    result = algorithm.bootstrap(
        colloc, seed_labels, np.arange(11), 2, alpha=0.1, threshold=0.8, max_iterations=10,
        use_discourse=False, discourse_min_count=2, rule_min_count=1)
    np.testing.assert_array_equal(result.labels, [0] * 5 + [1] + [0] * 4 + [-1])
    assert result.converged and result.labelled_per_iteration == (6, 10, 10)
    # A threshold above the rule's confidence labels nothing beyond the seeds.
    strict = algorithm.bootstrap(
        colloc, seed_labels, np.arange(11), 2, alpha=0.1, threshold=0.9, max_iterations=10,
        use_discourse=False, discourse_min_count=2, rule_min_count=1)
    np.testing.assert_array_equal(strict.labels, seed_labels)


def test_one_sense_per_discourse_relabels_a_dominated_discourse():
    labels = np.array([0, 0, 1, -1, 1, -1, 0, 1])
    discourse = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    fixed = np.array([False, False, True, False, False, False, False, False])
    out = algorithm.one_sense_per_discourse(labels, discourse, fixed, 2, min_count=2)
    # Discourse 0: sense 0 twice against once -> all 0, but the fixed seed keeps its 1.
    # Discourse 1: a single label, below min_count. Discourse 2: a tie, no majority.
    np.testing.assert_array_equal(out, [0, 0, 1, 0, 1, -1, 0, 1])
    relaxed = algorithm.one_sense_per_discourse(labels, discourse, fixed, 2, min_count=1)
    np.testing.assert_array_equal(relaxed, [0, 0, 1, 0, 1, 1, 0, 1])


def test_cautious_keeps_the_best_confident_rules_of_each_sense():
    colloc = made_up([[0]] * 5 + [[1]] * 4 + [[2]] * 3 + [[3]] * 6 + [[4]], 5)
    labels = np.array([0] * 12 + [1] * 6 + [0])
    rules = dl.train(colloc, labels, 2, alpha=0.1)
    kept, capped = algorithm.cautious(rules, threshold=0.9, per_sense=2)
    # Sense 0: c0 (5), c1 (4), c2 (3), c4 (1: 1.1/1.2 = 0.92); sense 1: c3.
    np.testing.assert_array_equal(kept.collocation, [3, 0, 1])
    assert capped
    assert dl.classify(kept, colloc)[1][9] == 0.0  # c2 has no rule any more.


def test_label_by_collocations_leaves_conflicts_unlabelled():
    colloc = made_up([[0], [1, 2], [0, 1], [2], [3]], 4)
    labels = seeds.label_by_collocations(colloc, {0: [0], 1: [1, 2]})
    np.testing.assert_array_equal(labels, [0, 1, -1, 1, -1])


def test_salient_collocations_rank_by_pointwise_mutual_information():
    """N = 4 occurrences; p(rare) = 0.01, p(the) = 0.2. Salience log(c / (N prod p)):
    +1+2=the rare: log(2 / 0.008) = log 250; -1=rare: log(2 / 0.04) = log 50;
    -1=the: log(4 / 0.8) = log 5; win=rare is not an allowed kind."""
    names = ("-1=the", "-1=rare", "win=rare", "+1+2=the rare")
    rows = [[0, 1, 2, 3], [0, 1, 2, 3], [0], [0]]
    colloc = dl.Collocations(names, np.array([0, 4, 8, 9, 10]),
                             np.array([f for r in rows for f in r]))
    probabilities = {"rare": 0.01, "the": 0.2}
    kinds = ("-1", "+1+2")
    assert seeds.salient_collocations(colloc, probabilities, kinds, min_count=2) == [3, 1, 0]
    assert seeds.salient_collocations(colloc, probabilities, kinds, min_count=3) == [0]
    assert seeds.word_probabilities([("A", "b"), ("a",)]) == {
        "a": 2 / 7, "b": 1 / 7, "<s>": 2 / 7, "</s>": 2 / 7}


def test_judged_seeds_keep_collocations_whose_samples_agree():
    colloc = made_up([[0]] * 5 + [[1]] * 5, 2)
    gold = np.array([1, 1, 1, 1, 1, 0, 0, 1, 1, 2])
    found, seen = seeds.judged_seeds(colloc, [0, 1], gold, samples=5, agreement=4, seed=0)
    assert found == {1: [0]}  # c1's samples split 2 / 2 / 1: rejected.
    np.testing.assert_array_equal(seen, np.arange(10))


def test_split_by_discourse_keeps_discourses_whole():
    discourses = [f"d{k // 3}" for k in range(30)] + [f"s{k}" for k in range(20)]
    kept, held = stage.split_by_discourse(discourses, 0.2, seed=0)
    assert not {discourses[k] for k in kept} & {discourses[k] for k in held}
    assert sorted(np.concatenate([kept, held])) == list(range(50))
    assert 10 <= len(held) <= 12


# --- The stage -------------------------------------------------------------------------------

def test_real_run_beats_the_most_frequent_sense(shared_data, tmp_path, capsys):
    """`serve`, seed 0, the default config on the test split. Measured: yarowsky 71.7%,
    most frequent sense 40.5%, seed-only list 64.4%, supervised list 85.4% (121 labels
    seen of the 3,502 in the pool)."""
    config = yarowsky_config(shared_data)
    config.input.words = ("serve",)
    stage.check_config(config)
    results = stage.run(config, tmp_path)
    accuracy = {row: by_word["serve"] for row, by_word in results.items()}
    assert accuracy["yarowsky"] > accuracy["most_frequent_sense"] + 0.2
    assert accuracy["supervised_decision_list"] > accuracy["yarowsky"]
    assert json.loads((tmp_path / "results.json").read_text()) == results
    details = json.loads((tmp_path / "yarowsky_details.json").read_text())["serve"]
    assert 0 < details["labels_seen"] <= 25 * 5
    assert "| yarowsky |" in capsys.readouterr().out


def test_hand_given_seeds_read_no_labels(shared_data):
    """Two collocations by hand for `interest` (`:runlocal`, test split, seed 0). Measured:
    yarowsky 61.0%, most frequent sense 51.9%."""
    config = yarowsky_config(shared_data, "runlocal")
    config.method.seed_collocations = {"interest_6": ["+1=rates"], "interest_5": ["-1+1=% in"]}
    stage.check_config(config)
    rows, details = stage.evaluate_word(config, "interest")
    assert details["labels_seen"] == 0 and "same_labels_decision_list" not in rows
    assert details["seed_collocations"] == {"interest_6": ["+1=rates"],
                                            "interest_5": ["-1+1=% in"]}
    assert rows["yarowsky"] > rows["most_frequent_sense"]


@pytest.mark.parametrize("field,value,message", [
    ("method.threshold", 1.5, "config.method.threshold=1.5: must be in (0, 1]"),
    ("method.threshold", 0.0, "config.method.threshold=0.0"),
    ("method.alpha", 0.0, "config.method.alpha=0.0"),
    ("method.window", 0, "config.method.window=0"),
    ("method.seed_method", "magic", "config.method.seed_method='magic'"),
    ("method.salient_agreement", 6, "config.method.salient_agreement=6"),
    ("method.seed_kinds", ("+3",), "config.method.seed_kinds='+3'"),
    ("method.seed_collocations", {"cord": ["rope"]}, "config.method.seed_collocations.cord='rope'"),
    ("method.seed_collocations", {"bank_1": ["+1=river"]},
     "config.method.seed_collocations.bank_1='bank_1': not a sense"),
    ("input.words", ("line", "bank"), "config.input.words='bank'"),
    ("input.test_fraction", 1.0, "config.input.test_fraction=1.0"),
    ("input.evaluate_on", "train", "config.input.evaluate_on='train'"),
])
def test_bad_config_values_name_the_field(shared_data, field, value, message):
    config = yarowsky_config(shared_data)
    section, _, key = field.rpartition(".")
    config[section][key] = value
    with pytest.raises(ValueError) as error:
        stage.check_config(config)
    assert message in str(error.value)


def test_missing_data_names_the_field(tmp_path):
    config = yarowsky_config()
    config.input.data_dir = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.input.data_dir=.*nowhere"):
        stage.check_config(config)
    config.input.data_dir = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="no senseval.zip"):
        stage.check_config(config)


def test_config_and_its_runlocal_variant_pass_the_checks(shared_data):
    for arg in (None, "runlocal"):
        config = yarowsky_config(shared_data, arg)
        config.lock()
        stage.check_config(config)
    assert config.input.words == ("interest",)


def test_validate_sends_yarowsky_configs_to_their_own_checks(shared_data):
    """`validate` runs the stage's checks, and refuses neural stages for this method and
    the yarowsky stage for a neural method, naming config.stages."""
    from ssl_jax import validate
    from ssl_jax.config import base_config

    config = yarowsky_config(shared_data, "runlocal")
    validate.validate(config)
    config.stages = ("yarowsky", "knn")
    with pytest.raises(ValueError, match=r"config.stages=.*only the stage"):
        validate.validate(config)
    neural = base_config()
    neural.stages = ("pretrain", "yarowsky")
    with pytest.raises(ValueError, match=r"config.stages=.*needs config.method.name"):
        validate.validate(neural)
