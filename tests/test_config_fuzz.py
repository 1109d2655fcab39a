"""Bad configs from a property-based generator (hypothesis): refused up front, or they work.

Each example takes a `:runlocal` config, sets one field of the sections that
pretraining reads to a value drawn for its type (zero, negatives, NaN, inf, empty
and unknown strings, tuples of the wrong length, ...), and checks the property:

    `validate.validate`, or loading the data and building the run (the checks that
    need the data), refuses it with a ValueError / FileNotFoundError naming the
    field; or else its initial state and train step trace (`jax.eval_shape`: every
    shape and dtype, nothing computed).

An exception of any other kind, or one while tracing, is a bad input that the checks
before compilation let through. The examples are derandomized (the same each run);
`SSL_JAX_FUZZ_EXAMPLES=N` draws N per base config for a longer search.
"""

import collections
import functools
import math
import os
import pathlib
import time

import hypothesis
import jax
import pytest
from hypothesis import strategies as st

from ssl_jax import config_rules, train, validate
from ssl_jax.config import load_config_file
from ssl_jax.data import loader, sources

REPO = pathlib.Path(__file__).resolve().parents[1]
SECTIONS = ("input", "model", "method", "optim", "schedule", "mesh", "guard", "checkpoint", "log")
BASES = ("quickstart", "mae_mnist", "ijepa_mnist", "byol_mnist", "gpt_shakespeare")
EXAMPLES = int(os.environ.get("SSL_JAX_FUZZ_EXAMPLES", "8"))
OUTCOMES = collections.Counter()


def base_config(name: str):
    return load_config_file(str(REPO / "configs" / f"{name}.py"), "runlocal")


def leaf_fields(config) -> list[tuple[str, object]]:
    """(dotted path, value) of every leaf under the pretraining sections."""
    return [field for section in SECTIONS
            for field in config_rules.leaves(config[section], section + ".")]


def values_like(value) -> st.SearchStrategy:
    """Values of `value`'s type, biased to the edges where checks are missed."""
    ints = st.sampled_from([0, -1, 1, 2, 3, 7, 4096]) | st.integers(-5, 300)
    floats = (st.sampled_from([0.0, -1.0, 1.0, 1.5, 1e9, math.nan, math.inf, -math.inf])
              | st.floats(-2.0, 2.0))
    if isinstance(value, bool):  # Either value is valid: nothing to find there.
        return st.nothing()
    if isinstance(value, int):
        return ints
    if isinstance(value, float):
        return floats
    if isinstance(value, str):
        return st.sampled_from(["", "bogus", "none", value.upper()])
    if isinstance(value, tuple):
        items = floats if any(isinstance(v, float) for v in value) else ints
        return st.lists(items, max_size=4).map(tuple)
    return st.nothing()


DATASETS = {}


def load_data(config_input):
    """`sources.load`, once per distinct input section (MNIST takes a second or two)."""
    key = config_input.to_json()
    if key not in DATASETS:
        DATASETS[key] = sources.load(config_input)
    return DATASETS[key]


def mutated(config_name: str, draw) -> tuple[object, str, object]:
    config = base_config(config_name)
    fields = [(path, value) for path, value in leaf_fields(config)
              if not values_like(value).is_empty]
    path, value = draw(st.sampled_from(fields))
    new = draw(values_like(value))
    section, _, key = path.rpartition(".")
    try:
        setattr(functools.reduce(getattr, section.split("."), config), key, new)
    except (TypeError, ValueError):  # ml_collections' own type check: the CLI refuses it too.
        hypothesis.reject()
    return config, path, new


def build(config) -> train.Run:
    """Load the data and build the run: the checks that need the data (its files, sizes,
    channels, token ids), all before anything compiles."""
    return train.build(config, None if config.input.dataset == "tfds" else load_data(config.input))


def trace_a_step(run: train.Run):
    """Trace the initial state and one train step: every shape and dtype, nothing computed."""
    state = jax.eval_shape(lambda: train.init_state(run))
    batch = loader.zeros_like_spec(run.pipeline.spec())
    jax.eval_shape(functools.partial(train.train_step, run), state, batch)


@pytest.mark.parametrize("config_name", BASES)
def test_a_mutated_config_is_refused_naming_the_field_or_builds_and_traces(config_name,
                                                                        shared_data):
    @hypothesis.settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
                         suppress_health_check=list(hypothesis.HealthCheck), database=None)
    @hypothesis.given(st.data())
    def check(data):
        config, path, value = mutated(config_name, data.draw)
        key = path.rpartition(".")[2]
        start = time.perf_counter()
        try:
            validate.validate(config)
            run = build(config)
        except (ValueError, FileNotFoundError) as error:
            OUTCOMES["refused"] += 1
            print(f"  config.{path}={value!r}: refused ({time.perf_counter() - start:.1f} s)")
            assert key in str(error), f"config.{path}={value!r} refused without naming it: {error}"
            return
        try:
            trace_a_step(run)
        except Exception as error:
            raise AssertionError(f"config.{path}={value!r} passed the checks, then "
                                 f"{type(error).__name__}: {error}") from error
        OUTCOMES["accepted"] += 1
        print(f"  config.{path}={value!r}: accepted, traced ({time.perf_counter() - start:.1f} s)")

    OUTCOMES.clear()
    check()
    print(f"{config_name}: {sum(OUTCOMES.values())} mutated configs, {OUTCOMES['refused']} "
          f"refused naming the field, {OUTCOMES['accepted']} accepted and traced")
