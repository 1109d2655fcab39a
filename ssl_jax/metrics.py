"""Metrics: a JSONL file, TensorBoard event files, and a console progress line.

Only process 0 writes. Values are pulled from the device once per logging
interval (one `device_get` of a small dict), never inside the step.
"""

import json
import pathlib
import time

import jax
import numpy as np
from absl import logging


class MetricWriter:
    """Appends `{"step": s, **scalars}` lines to `metrics.jsonl` and TensorBoard scalars."""

    def __init__(self, workdir: str | pathlib.Path):
        self.enabled = jax.process_index() == 0
        self.path = pathlib.Path(workdir) / "metrics.jsonl"
        self._tb = None
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            from tensorboardX import SummaryWriter  # Light: needs no TensorFlow.
            self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

    def write(self, step: int, scalars: dict):
        if not self.enabled:
            return
        scalars = {k: float(np.asarray(v)) for k, v in scalars.items()}
        try:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": int(step), **scalars}) + "\n")
        except OSError as error:  # Name the file: a full disk says only "No space left".
            raise OSError(error.errno, f"writing the metrics of step {step}: {error.strerror}",
                          str(self.path)) from error
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, int(step))
        self._tb.flush()

    def close(self):
        """Flush and close the event files; a failure is logged, not raised, so that it
        never hides the error that ended a run (metrics.jsonl holds every value)."""
        if self._tb is not None:
            try:
                self._tb.close()
            except OSError as error:
                logging.error("could not flush the TensorBoard events in %s: %s",
                              self._tb.logdir, error)


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
    """The records of `workdir/metrics.jsonl`, in order."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]


class ProgressLine:
    """`step 120/1000 | loss 4.1231 | 2,345 img/s | ETA 0:01:12` on the console."""

    def __init__(self, total_steps: int, global_batch_size: int, start_step: int):
        self.total_steps = total_steps
        self.global_batch_size = global_batch_size
        self._last = (start_step, time.perf_counter())

    def update(self, step: int, scalars: dict) -> dict:
        """Log a line; return throughput figures to record with the metrics."""
        last_step, last_time = self._last
        now = time.perf_counter()
        steps_per_s = (step - last_step) / max(now - last_time, 1e-9)
        self._last = (step, now)
        eta = (self.total_steps - step) / max(steps_per_s, 1e-9)
        shown = " | ".join(f"{k} {float(v):.4g}" for k, v in scalars.items())
        logging.info("step %d/%d | %s | %.0f img/s | ETA %s", step, self.total_steps, shown,
                     steps_per_s * self.global_batch_size, time.strftime("%H:%M:%S",
                                                                         time.gmtime(eta)))
        return {"steps_per_s": steps_per_s, "images_per_s": steps_per_s * self.global_batch_size}
