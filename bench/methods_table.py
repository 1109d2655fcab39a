r"""One table for several methods on one dataset: every method's SSL encoder as a row,
plus raw pixels, random init and supervised training from scratch on the same labels;
test accuracy (%), mean ± std over seeds.

    python bench/methods_table.py --dataset mnist --workdir /tmp/methods_mnist \
        --methods simclr,mocov2,mocov3,byol,simsiam,directpred,barlow_twins,vicreg \
        --seeds 0,1,2 --overrides "input.train_limit=10000,schedule.epochs=5"

Runs `configs/<method>_<dataset>.py` for each method and seed (all its stages:
pretrain, knn, linear_probe, finetune) in `WORKDIR/<method>/seed_<s>`, with the
comma-separated `--overrides` (Python literals) applied to every config (a key
written `?key` only to the configs that have that field, e.g.
`?method.projector.hidden_dim=512` for the methods with a projector). A run
whose `results.json` exists is not run again, so a stopped table resumes, and a
stopped pretraining resumes from its checkpoint.

The baselines depend on the backbone and the fine-tuning recipe, not on the
method: raw pixels, the backbone at its random initialisation (its initial
parameters depend only on the seed) and the from-scratch fine-tuning on the same
labels are computed in the runs of the first method of each distinct
(`config.model`, `config.finetune`) pair only, and shown once per pair (labelled
with the backbone when the table has several); where another method's results
also hold them (runs made before this rule), they are checked to agree.
"""

import ast
import json
import pathlib
import time

import numpy as np
from absl import app, flags

_DATASET = flags.DEFINE_string("dataset", "mnist", "Dataset suffix of the config files.")
_METHODS = flags.DEFINE_list("methods", ["simclr"], "Methods (config file prefixes).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Root directory.")
_OVERRIDES = flags.DEFINE_string("overrides", "", "key.path=literal,... for every config.")
flags.mark_flags_as_required(["workdir"])

REPO = pathlib.Path(__file__).resolve().parents[1]
BASELINES = ("raw_pixels", "random_init", "from_scratch")


def parse_overrides(text: str) -> dict:
    """"a.b=1,c.d=(0.2, 1.0)" -> {"a.b": 1, "c.d": (0.2, 1.0)}; commas inside brackets stay."""
    pairs, depth, current = [], 0, ""
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            pairs.append(current)
            current = ""
        else:
            current += char
    pairs.append(current)
    out = {}
    for pair in filter(str.strip, pairs):
        key, _, value = pair.partition("=")
        if not value:
            raise ValueError(f"--overrides: {pair!r} is not key=value")
        out[key.strip()] = ast.literal_eval(value.strip())
    return out


def method_config(method: str, seed: int, overrides: dict, baselines: bool):
    from ssl_jax.config import load_config_file

    path = REPO / "configs" / f"{method}_{_DATASET.value}.py"
    if not path.is_file():
        raise FileNotFoundError(f"--methods {method} --dataset {_DATASET.value}: no {path}")
    config = load_config_file(str(path))
    config.seed = seed
    for key, value in overrides.items():
        optional = key.startswith("?")
        *parents, leaf = key.lstrip("?").split(".")
        section = config
        for name in parents:
            if name not in section:
                break
            section = section[name]
        else:
            if leaf in section:
                section[leaf] = value
                continue
        if not optional:
            raise KeyError(f"--overrides: config of {method!r} has no field {key!r} (prefix it "
                           "with '?' to apply it only where present)")
    config.stages = ("pretrain", "knn", "linear_probe", "finetune")
    if not baselines:
        config.eval.baselines = ()
        config.finetune.from_scratch_baseline = False
    return config


def backbone_key(method: str, overrides: dict) -> str:
    """What the baselines depend on: the backbone and the fine-tuning settings."""
    config = method_config(method, 0, overrides, baselines=True)
    return json.dumps({"model": config.model.to_dict(), "finetune": config.finetune.to_dict()},
                      sort_keys=True, default=str)


def backbone_label(method: str, overrides: dict) -> str:
    model = method_config(method, 0, overrides, baselines=True).model
    if model.name == "vit":
        return f"vit w{model.width} d{model.depth}, as {method}"
    return f"{model.name}, as {method}"


def run_one(method: str, seed: int, overrides: dict, baselines: bool) -> dict:
    from ssl_jax import stages, validate

    workdir = pathlib.Path(_WORKDIR.value) / method / f"seed_{seed}"
    done = workdir / "results.json"
    if done.is_file():
        return json.loads(done.read_text())
    config = method_config(method, seed, overrides, baselines)
    validate.validate(config)
    start = time.time()
    results = stages.run_stages(config, workdir)
    print(f"{method} seed {seed}: {time.time() - start:.0f} s", flush=True)
    return results


def cell(values: list[float]) -> str:
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}" if values else "-"


def table(results: dict[str, list[dict]], baseline_owners: dict[str, str]) -> str:
    """Rows: each method's `ssl` row (renamed), then the baselines of each method in
    `baseline_owners` (method -> label; the label is dropped when there is one); raw
    pixels once; the from-scratch row fills only the fine-tuning column, the
    protocol it compares with."""
    rows = {method: [r["ssl"] for r in runs] for method, runs in results.items()}
    for index, (owner, label) in enumerate(baseline_owners.items()):
        suffix = f" ({label})" if len(baseline_owners) > 1 else ""
        for name in BASELINES:
            if name == "raw_pixels" and index:
                continue
            rows[name + ("" if name == "raw_pixels" else suffix)] = [
                r[name] for r in results[owner] if name in r]
    columns = list(dict.fromkeys(c for runs in rows.values() for r in runs for c in r))
    lines = ["| representation | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for name, runs in rows.items():
        lines.append(f"| {name} | " + " | ".join(
            cell([r[c] for r in runs if c in r]) for c in columns) + " |")
    return "\n".join(lines)


def check_baselines_agree(results: dict[str, list[dict]], owner_of: dict[str, str]):
    """raw pixels and random init must not depend on the method (same seed, same backbone)."""
    for method, owner in owner_of.items():
        if method == owner:
            continue
        for first, other in zip(results[owner], results[method]):
            for name in ("raw_pixels", "random_init"):
                for column, value in first.get(name, {}).items():
                    if name in other and abs(other[name][column] - value) > 1e-6:
                        print(f"warning: {name} {column} differs between {owner} "
                              f"({value:.4f}) and {method} ({other[name][column]:.4f})")


def main(argv):
    del argv
    overrides = parse_overrides(_OVERRIDES.value)
    owner_by_key, owner_of = {}, {}
    for method in _METHODS.value:
        owner_of[method] = owner_by_key.setdefault(backbone_key(method, overrides), method)
    results = {method: [run_one(method, int(seed), overrides, baselines=owner_of[method] == method)
                        for seed in _SEEDS.value]
               for method in _METHODS.value}
    check_baselines_agree(results, owner_of)
    text = table(results, {owner: backbone_label(owner, overrides)
                           for owner in owner_by_key.values()})
    root = pathlib.Path(_WORKDIR.value)
    (root / "table.json").write_text(json.dumps(
        {"dataset": _DATASET.value, "seeds": _SEEDS.value, "overrides": _OVERRIDES.value,
         "results": results, "table": text}, indent=2))
    print(f"\n{_DATASET.value}, seeds {_SEEDS.value}, overrides {_OVERRIDES.value!r}\n{text}")


if __name__ == "__main__":
    app.run(main)
