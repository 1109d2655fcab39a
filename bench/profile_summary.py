r"""Where a profiled program spent its device time: a table from a JAX profiler trace.

    python bench/profile_summary.py TRACE [--top 25] [--steps 5]

TRACE: a `perfetto_trace.json.gz` that `jax.profiler.trace(dir, create_perfetto_trace=True)`
wrote (under `dir/plugins/profile/<date>/`), or a directory to search for the newest one.
Needs no TensorBoard or xprof: the file is Chrome-trace JSON.

Device processes are those whose name starts with "/device:" (a GPU's streams: one event
per kernel); where there is none (the CPU backend), the threads of the host process whose
name starts with "tf_XLA" (XLA's executor and thread pools), less the runtime's own events
around the ops (names with "::", e.g. `ThunkExecutor::Execute`). Events are complete events
("ph" == "X"); an event's time is its "dur" (us); events are grouped by name, the kernel
or XLA op. Printed: the top `--top` op kinds (names less their instance number) and names
by total time, each with its calls, total and mean time and share of the busy time (the
sum over all events, so overlapping streams can sum to more than the wall-clock span), then
the busy time per step (÷ `--steps`).
"""

import argparse
import collections
import gzip
import json
import pathlib
import re


def find_trace(path: pathlib.Path) -> pathlib.Path:
    """`path` itself, or the newest perfetto_trace.json.gz under the directory `path`."""
    if path.is_file():
        return path
    traces = sorted(path.rglob("perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not traces:
        raise FileNotFoundError(f"no perfetto_trace.json.gz under {path}: was the trace taken "
                                "with jax.profiler.trace(..., create_perfetto_trace=True)?")
    return traces[-1]


def load_events(path: pathlib.Path) -> list[dict]:
    """The trace events of a perfetto_trace.json.gz."""
    with gzip.open(path) as f:
        trace = json.load(f)
    return trace["traceEvents"] if isinstance(trace, dict) else trace


def device_events(events: list[dict]) -> list[dict]:
    """Complete events of the device processes (or, on CPU, of XLA's host threads)."""
    process = {e["pid"]: e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "process_name"}
    thread = {(e["pid"], e.get("tid")): e["args"]["name"] for e in events
              if e.get("ph") == "M" and e.get("name") == "thread_name"}
    complete = [e for e in events if e.get("ph") == "X" and "dur" in e]
    on_device = [e for e in complete if process.get(e["pid"], "").startswith("/device:")]
    if on_device:
        return on_device
    return [e for e in complete if thread.get((e["pid"], e.get("tid")), "").startswith("tf_XLA")
            and "::" not in e["name"]]  # Not the runtime's wrappers around the ops.


def kind(name: str) -> str:
    """An op's name without XLA's instance number: `transpose_copy_fusion.87` and
    `loop_add_fusion_3` -> `transpose_copy_fusion`, `loop_add_fusion`."""
    return re.sub(r"[._]\d+$", "", name)


def table(events: list[dict], top: int, key, header: str) -> tuple[str, float]:
    """Markdown rows of the `top` groups (`key(name)`) by total time; the busy time (us)."""
    total_us = collections.Counter()
    calls = collections.Counter()
    for e in events:
        total_us[key(e["name"])] += e["dur"]
        calls[key(e["name"])] += 1
    busy_us = sum(total_us.values())
    rows = [f"| {header} | calls | total (ms) | mean (us) | share |", "|---|---|---|---|---|"]
    for name, us in total_us.most_common(top):
        rows.append(f"| `{name[:90]}` | {calls[name]} | {us / 1e3:.2f} | "
                    f"{us / calls[name]:.1f} | {100 * us / busy_us:.1f} % |")
    return "\n".join(rows), busy_us


def summary(events: list[dict], top: int, steps: int) -> str:
    """Tables of the `top` op kinds and names by total time, and the busy time per step."""
    by_kind, busy_us = table(events, top, kind, "kind (name less its number)")
    by_name, _ = table(events, top, lambda name: name, "kernel / op")
    return (f"{by_kind}\n\n{by_name}\n\n{len(events)} events; busy {busy_us / 1e3:.1f} ms "
            f"in all, {busy_us / 1e3 / steps:.2f} ms per step ({steps} steps)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trace", type=pathlib.Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--steps", type=int, default=1, help="Steps the trace holds.")
    args = parser.parse_args()
    path = find_trace(args.trace)
    print(f"{path}\n\n{summary(device_events(load_events(path)), args.top, args.steps)}")


if __name__ == "__main__":
    main()
