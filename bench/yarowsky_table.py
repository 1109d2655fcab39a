r"""The Yarowsky stage for several seeds: mean ± std test accuracy per word and row.

    python bench/yarowsky_table.py --config configs/yarowsky_senseval.py \
        --workdir /tmp/yarowsky_seeds --seeds 0,1,2

The flags are those of `bench/seeds.py` (imported for them and for its table),
including `--config.x.y=...` overrides; `--config.input.evaluate_on=validation`
reports on a held-out part of each training pool instead of the test split (how
the defaults were chosen). Prints the table (accuracy in %), the labels the
method read per word, and the seconds per seed; writes them with the per-seed
numbers to `WORKDIR/summary.json`.
"""

import json
import pathlib

import numpy as np
from absl import app, flags

import seeds  # bench/seeds.py: defines --config, --workdir, --seeds; summarize().

FLAGS = flags.FLAGS


def main(argv):
    del argv
    root = pathlib.Path(FLAGS.workdir)
    per_seed, seconds = seeds.run_seeds(FLAGS.config, FLAGS.seeds, root)
    labels_seen = []
    for seed in FLAGS.seeds:
        details = json.loads((root / f"seed_{seed}" / "yarowsky_details.json").read_text())
        labels_seen.append({word: d["labels_seen"] for word, d in details.items()})
    table = seeds.summarize(per_seed)
    seen = {word: float(np.mean([s[word] for s in labels_seen])) for word in labels_seen[0]}
    (root / "summary.json").write_text(json.dumps(
        {"seeds": FLAGS.seeds, "evaluate_on": FLAGS.config.input.evaluate_on,
         "results": per_seed, "labels_seen": labels_seen, "seconds": seconds, "table": table},
        indent=2))
    print(f"\nseeds {FLAGS.seeds}, {FLAGS.config.input.evaluate_on} accuracy (%), "
          f"{np.mean(seconds):.1f} s per seed\n{table}\n"
          f"labels read by the method (mean over seeds): {seen}")


if __name__ == "__main__":
    app.run(main)
