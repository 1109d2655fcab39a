r"""Run a config's stages for several seeds and print mean ± std of every result.

    python bench/seeds.py --config configs/quickstart.py --workdir /tmp/qs_seeds --seeds 0,1,2

Accepts the same `--config.x.y=...` overrides as `ssl_jax.main`. Prints a
Markdown table (test accuracy in %, mean ± std over the seeds) for
docs/BENCHMARKS.md, and writes it with the per-seed numbers to
`WORKDIR/summary.json`.
"""

import json
import pathlib
import time

import numpy as np
from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Root directory; one sub-directory per seed.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
flags.mark_flags_as_required(["config", "workdir"])


def summarize(per_seed: list[dict]) -> str:
    rows = list(dict.fromkeys(name for r in per_seed for name in r))
    columns = list(dict.fromkeys(c for r in per_seed for row in r.values() for c in row))
    lines = ["| representation | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in rows:
        cells = []
        for column in columns:
            values = [100 * r[name][column] for r in per_seed if column in r.get(name, {})]
            cells.append(f"{np.mean(values):.1f} ± {np.std(values):.1f}" if values else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_seeds(config, seeds: list[str], root: pathlib.Path) -> tuple[list[dict], list[float]]:
    """Every stage of `config` for each seed in `root/seed_<s>`: results and seconds per seed."""
    from ssl_jax import stages, validate

    per_seed, seconds = [], []
    for seed in map(int, seeds):
        config = config.copy_and_resolve_references()
        config.seed = seed
        validate.validate(config)
        start = time.time()
        per_seed.append(stages.run_stages(config, root / f"seed_{seed}"))
        seconds.append(time.time() - start)
    return per_seed, seconds


def main(argv):
    del argv
    root = pathlib.Path(_WORKDIR.value)
    per_seed, seconds = run_seeds(_CONFIG.value, _SEEDS.value, root)
    table = summarize(per_seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "summary.json").write_text(json.dumps(
        {"seeds": _SEEDS.value, "results": per_seed, "seconds": seconds, "table": table},
        indent=2))
    print(f"\nseeds {_SEEDS.value}, {np.mean(seconds):.0f} s per seed (all stages)\n{table}")


if __name__ == "__main__":
    app.run(main)
