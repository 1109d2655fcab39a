r"""Train-step throughput of ssl_jax next to a PyTorch reference (issue #7): SimCLR or BYOL,
ResNet-18 or ResNet-50 (CIFAR or ImageNet stem), measured side by side in one process.

    OMP_WAIT_POLICY=PASSIVE python bench/step_throughput.py \
        --config configs/simclr_cifar10.py --config.input.batch_size=128 --blocks 3 --steps 5

(`configs/byol_cifar10.py` for BYOL; any config and `--config.*` override.) `--noreference`
times the two ssl_jax steps alone, for methods without a PyTorch reference, e.g. MAE
ViT-B/16 at 224 (the views' size is `method.view.out_size`, not `input.image_size`):

    python bench/step_throughput.py --config configs/mae_cifar10.py --noreference \
        --config.model.name=vit_b --config.model.patch_size=16 --config.input.image_size=224 \
        --config.method.view.out_size=224 --config.model.dtype=bfloat16

`bench/gpu_suite.sh` runs the GPU set in one call. Every step runs
on one resident batch, as the "resident" loop of `bench/step_input_ratio.py`: B =
config.input.batch_size random uint8 images of the config's size, put on the device once.

  ssl_jax, aug included  the real `train.make_step` step: both views augmented on the device,
                         forward, loss, backward, optimizer (and BYOL's EMA target update).
  ssl_jax, aug excluded  the same step built from a copy of the config whose views are the
                         identity: crop_scale = crop_ratio = (1, 1), every probability and
                         strength 0 (per_view too). augment.py then leaves flip, colour jitter,
                         grayscale, blur and solarize out of the program; what still runs per
                         view is uint8 -> float, the crop-box draw (22 uniforms per image), a
                         bilinear resample of the whole image onto itself (the identity up to
                         ~1e-7), the clip to [0, 1] and the mean/std normalisation.
  PyTorch                `bench/torch_reference.py`: the same network, loss, LARS (and EMA) on
                         two pre-made float views, i.e. augmentation excluded. The ratio
                         compares like with like for "aug excluded" only; "aug included" has
                         no PyTorch counterpart.
Both ssl_jax steps also compute what every ssl_jax step logs and the reference does not: the
online linear probe (on detached features), the gradient norm / finiteness check, and at the
logged steps (every `config.log.every_steps`, as in training) RankMe, SVDs of the `[2B, D]`
features and embeddings.

After `--warmup` steps of each, `--blocks` rounds of (jax excluded, torch, jax included)
blocks of `--steps` steps alternate, so drift in the machine's speed hits all three:

    images/s = B / t_step                 t_step = block seconds / steps; mean ± std over blocks
    ratio    = images/s(ssl_jax, aug excluded) / images/s(PyTorch), per round
    FLOP/s   = F / t_step                 F = FLOPs of the step, per device: XLA's cost
                                          analysis of the lowered program (that of the
                                          compiled one misses every convolution on GPU,
                                          where they become cuDNN calls: 49.5 against 5967
                                          GFLOP for SimCLR at B = 1024)
    MFU      = F / t_step / peak          peak: dense bfloat16 or TF32 FLOP/s of one GPU (JAX's
                                          default float32 precision on GPU is TF32); n/a on CPU
compile: seconds of `jax.jit(step).lower(state, batch).compile()` (the executable then timed,
under `jax.transfer_guard("disallow")`: a step that moved data between host and device
implicitly would raise).
Memory: on CPU the max RSS of the whole process (jax and torch together, getrusage) before
and after the timed blocks; on GPU jax's `peak_bytes_in_use` and torch's
`max_memory_allocated`. Checkpoint: seconds `Checkpointer.maybe_save(step, state,
force=True)` blocks the loop (digest, device-to-host copy; the write is asynchronous), mean
of `--saves` saves at new steps, each after the previous one finished, and its percent of
t_step(aug included) x config.checkpoint.every_steps.

Checks before timing (printed, asserted): ssl_jax's backbone + heads (probe excluded) and the
reference have the same parameter count; their losses agree to 1e-5 on fixed random
embeddings (NT-Xent for SimCLR, BYOL's symmetric loss); two LARS updates agree (relative
1e-4).

PyTorch runs on `--device` (default cuda when available, else cpu) with
torch.set_num_threads(os.cpu_count()), eager (`--torch_compile`: torch.compile of the loss),
channels-last (`--nochannels_last`: NCHW; on the 2-core CPU a SimCLR step at B = 32 took
2.15 s channels-last, 2.39 s NCHW); on cuda with cudnn.benchmark and TF32 matmuls, as XLA.
JAX runs on its default backend; on CPU XLA has its own Eigen thread pool. On a CPU that other
jobs share, set OMP_WAIT_POLICY=PASSIVE (the machine line prints it): with the default,
torch's OpenMP threads spin at every barrier and lose their cores to the other jobs; on the
loaded 2-core machine a SimCLR step at B = 16 took 4.9 s by default, 1.07 s with PASSIVE.
`--conv_rules=lax` builds the ssl_jax steps with JAX's own convolution gradients instead of
`ssl_jax.models.conv_backward`'s (an A/B of that module).
"""

import datetime
import os
import pathlib
import resource
import shlex
import sys
import tempfile
import time

import jax
import ml_collections
import numpy as np
import optax
import torch
from absl import app, flags, logging
from ml_collections import config_flags

from ssl_jax import checkpoint, losses, optim, sharding, train
from ssl_jax.data.sources import ArrayDataset
from ssl_jax.methods import byol
from ssl_jax.models import conv_backward

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import profile_summary  # noqa: E402  (sibling scripts, not a package)
from machine import machine  # noqa: E402
import torch_reference  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_BLOCKS = flags.DEFINE_integer("blocks", 3, "Rounds of alternating timed blocks.", lower_bound=1)
_STEPS = flags.DEFINE_integer("steps", 5, "Steps per timed block.", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps of each before the blocks.",
                               lower_bound=1)
_SAVES = flags.DEFINE_integer("saves", 3, "Checkpoint saves to time.", lower_bound=1)
_DEVICE = flags.DEFINE_enum("device", None, ["cpu", "cuda"], "PyTorch device (default: cuda "
                            "if available, else cpu).")
_CHANNELS_LAST = flags.DEFINE_bool("channels_last", True, "PyTorch channels-last memory format.")
_TORCH_COMPILE = flags.DEFINE_bool("torch_compile", False, "torch.compile the reference's loss.")
_APPEND = flags.DEFINE_string("append", None, "Also append the result block to this file.")
_PROFILE_DIR = flags.DEFINE_string(
    "profile_dir", None, "After timing, trace --profile_steps steps of the aug-included step "
    "into this directory (jax.profiler, perfetto_trace.json.gz) and print where its device "
    "time went (bench/profile_summary.py); with the reference, also torch.profiler's kernel "
    "table of as many PyTorch steps.")
_PROFILE_STEPS = flags.DEFINE_integer("profile_steps", 5, "Steps to profile.", lower_bound=1)
_REFERENCE = flags.DEFINE_bool("reference", True, "Time the PyTorch reference (SimCLR and BYOL "
                               "only); --noreference times the two ssl_jax steps alone, for any "
                               "method whose views are `config.method.view` (MAE, I-JEPA, ...).")
_CONV_RULES = flags.DEFINE_enum(
    "conv_rules", "ssl_jax", ["ssl_jax", "lax"], "Gradients of the ResNet/ConvNet convolutions: "
    "conv_backward's (what the models run) or JAX's own rules (lax.conv_general_dilated), for "
    "an A/B of the two.")
flags.mark_flags_as_required(["config"])

# A view that is the identity (module docstring).
IDENTITY_VIEW = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0,
                     jitter_prob=0.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
                     grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0)
# Dense peak FLOP/s of one GPU by a fragment of its device_kind (first match) and the
# model's dtype; "float32" is the TF32 tensor-core peak.
PEAK_FLOPS = (("H200", dict(bfloat16=989e12, float32=494.7e12)),
              ("H100 PCIe", dict(bfloat16=756e12, float32=378e12)),
              ("H100", dict(bfloat16=989e12, float32=494.7e12)),
              ("A100", dict(bfloat16=312e12, float32=156e12)))
GIB = 2**30


def identity_views(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `config` whose two views are the identity (IDENTITY_VIEW)."""
    config = config.copy_and_resolve_references()
    config.method.view.update(IDENTITY_VIEW)
    for field in config.method.get("per_view", {}):
        if field in IDENTITY_VIEW:
            config.method.per_view[field] = (IDENTITY_VIEW[field],) * 2
    return config


def random_dataset(config: ml_collections.ConfigDict) -> ArrayDataset:
    """One global batch of random uint8 images of the config's size and channels."""
    rng = np.random.default_rng(0)
    n, size, channels = config.input.batch_size, config.input.image_size, len(config.input.mean)
    images = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.int32)
    return ArrayDataset(images, labels, images[:0], labels[:0],
                        tuple(str(i) for i in range(10)))


class JaxStep:
    """A run's train step compiled ahead of time, its state and one resident batch."""

    def __init__(self, config: ml_collections.ConfigDict, dataset: ArrayDataset):
        self.run = train.build(config, dataset)
        self.state = train.init_state(self.run)
        self.batch = sharding.to_global(next(self.run.pipeline.batches(0)), self.run.mesh)
        start = time.perf_counter()
        lowered = train.make_step(self.run).lower(self.state, self.batch)
        self.compiled = lowered.compile()
        self.compile_seconds = time.perf_counter() - start
        cost = lowered.cost_analysis()  # Before XLA turns convolutions into library calls.
        self.flops = (cost[0] if isinstance(cost, list) else cost).get("flops")

    def timed(self, steps: int) -> float:
        """Seconds for `steps` steps; an implicit host <-> device transfer raises."""
        start = time.perf_counter()
        with jax.transfer_guard("disallow"):
            for _ in range(steps):
                self.state, metrics = self.compiled(self.state, self.batch)
            jax.block_until_ready((self.state, metrics))
        return time.perf_counter() - start


class TorchStep:
    """The reference step on two resident views, timed like `JaxStep`."""

    def __init__(self, reference: torch_reference.ReferenceStep, views: list[torch.Tensor]):
        self.reference, self.views = reference, views

    def timed(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.reference.step(*self.views)
        if self.reference.device.type == "cuda":
            torch.cuda.synchronize(self.reference.device)
        return time.perf_counter() - start


def check_reference(config, step: JaxStep, reference, learning_rate: float):
    """Parameter counts, losses and LARS of ssl_jax and the reference agree (asserts)."""
    online = {k: v for k, v in step.state.params.items() if k != "probe"}
    jax_count = sum(x.size for x in jax.tree.leaves(online))
    print(f"parameters (backbone + heads, no probe): ssl_jax {jax_count:,}, "
          f"PyTorch {reference.parameter_count():,}")
    assert jax_count == reference.parameter_count()
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(2, 16, 32)).astype(np.float32)
    t1, t2 = torch.from_numpy(z1), torch.from_numpy(z2)
    with jax.default_matmul_precision("highest"):  # Not TF32, JAX's default on GPU.
        if config.method.name == "simclr":
            tau = config.method.temperature
            name, ours, theirs = "NT-Xent", losses.nt_xent(z1, z2, tau), torch_reference.nt_xent(
                t1, t2, tau)
        else:
            name = "BYOL loss"
            ours = byol.symmetric_regression(losses.byol_regression, z1, z2)
            theirs = torch_reference.byol_loss(t1, t2)
    print(f"{name} on random embeddings: ssl_jax {float(ours):.7f}, PyTorch {theirs.item():.7f}")
    assert abs(float(ours) - theirs.item()) < 1e-5
    check_lars(config.optim, learning_rate)


def check_lars(optim_config, learning_rate: float):
    """Two LARS updates of a kernel and a bias agree in optax and the reference (relative to
    their size; the reference's update is its momentum buffer). Gradients of the size of the
    decay term, so a missed decay or trust ratio shows."""
    rng = np.random.default_rng(1)
    params = {"kernel": rng.normal(size=(6, 5)), "bias": rng.normal(size=5)}
    scale = optim_config.weight_decay or 1.0
    grads = [{k: scale * rng.normal(size=v.shape) for k, v in params.items()} for _ in range(2)]
    params, grads = jax.tree.map(lambda x: x.astype(np.float32), (params, grads))
    tx = optim.build_optimizer(optim_config, optax.constant_schedule(learning_rate))
    tensors = {k: torch.tensor(v) for k, v in params.items()}
    reference_lars = torch_reference.lars(list(tensors.values()), optim_config, learning_rate)
    opt_state, errors = tx.init(params), []
    for grad in grads:
        updates, opt_state = tx.update(grad, opt_state, params)
        params = optax.apply_updates(params, updates)
        for k, tensor in tensors.items():
            tensor.grad = torch.from_numpy(grad[k])
        reference_lars.step()
        for k, tensor in tensors.items():
            theirs = reference_lars.state[tensor]["momentum"].numpy()
            errors.append(np.abs(updates[k] - theirs).max() / np.abs(updates[k]).max())
    print(f"LARS, two updates: max relative difference {max(errors):.1e}")
    assert max(errors) < 1e-4


def checkpoint_seconds(config, state, saves: int) -> list[float]:
    """Seconds each forced save blocks the caller, into a temporary directory."""
    seconds = []
    with tempfile.TemporaryDirectory() as directory:
        ckpt = checkpoint.Checkpointer(directory, config.checkpoint.every_steps,
                                       config.checkpoint.keep)
        for step in range(1, saves + 1):
            # Untimed; Orbax's "Waiting for previous save" warning at the next save counts it.
            ckpt.manager.wait_until_finished()
            start = time.perf_counter()
            ckpt.maybe_save(step, state, force=True)
            seconds.append(time.perf_counter() - start)
        ckpt.close()
    return seconds


def profile(steps: dict, directory: str, n: int) -> str:
    """Where `n` steps of ssl_jax (aug included) and of the reference spent their time."""
    with jax.profiler.trace(directory, create_perfetto_trace=True):
        steps["included"].timed(n)
    path = profile_summary.find_trace(pathlib.Path(directory))
    events = profile_summary.device_events(profile_summary.load_events(path))
    text = f"ssl_jax, aug included, {n} steps ({path}):\n\n" + profile_summary.summary(
        events, 25, n)
    if "torch" in steps:
        cuda = steps["torch"].reference.device.type == "cuda"
        activities = [torch.profiler.ProfilerActivity.CPU] + (
            [torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        with torch.profiler.profile(activities=activities) as prof:
            steps["torch"].timed(n)
        text += (f"\n\nPyTorch, {n} steps:\n\n" + prof.key_averages().table(
            sort_by="cuda_time_total" if cuda else "self_cpu_time_total", row_limit=25))
    return text


def max_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # KiB on Linux.


def peak_flops(dtype: str) -> float | None:
    if jax.default_backend() != "gpu":
        return None
    kind = jax.devices()[0].device_kind
    return next((peaks[dtype] for fragment, peaks in PEAK_FLOPS if fragment in kind), None)


def mean_std(values, fmt: str) -> str:
    return f"{np.mean(values):{fmt}} ± {np.std(values):{fmt}}"


COLUMNS = dict(excluded="ssl_jax, aug excluded", torch="PyTorch, views pre-made (aug excluded)",
               included="ssl_jax, aug included")


def results_table(steps: dict, t_step: dict, rss: tuple[float, float], saves: list[float],
                  config, device: torch.device) -> str:
    """The markdown table; `steps` / `t_step` keyed by COLUMNS' keys, "torch" optional."""
    images = {k: config.input.batch_size / t for k, t in t_step.items()}
    peak = peak_flops(config.model.dtype)

    def row(label: str, cell) -> tuple:
        """`cell(key)` for each ssl_jax column; the reference's cell from `cell("torch")`."""
        return (label, *(cell(k) for k in steps))

    def flops(key: str, index: int) -> str:
        if key == "torch":
            return "-"
        if steps[key].flops is None:
            return "n/a"
        achieved = steps[key].flops / t_step[key]
        mfu = "n/a" if peak is None else mean_std(100 * achieved / peak, ".1f") + " %"
        return (f"{steps[key].flops / 1e9:.1f}", mean_std(achieved / 1e9, ".1f"), mfu)[index]

    def ratio(key: str) -> str:
        if key == "excluded":
            return mean_std(images["excluded"] / images["torch"], ".2f")
        return {"torch": "(reference)"}.get(key, "no PyTorch counterpart")

    def compile_seconds(key: str) -> str:
        if key == "torch":
            return "torch.compile (in warm-up)" if _TORCH_COMPILE.value else "eager"
        return f"{steps[key].compile_seconds:.1f}"

    if jax.default_backend() == "gpu":
        jax_peak = jax.local_devices()[0].memory_stats()["peak_bytes_in_use"] / GIB
        memory = row("peak device memory (jax: peak_bytes_in_use of both jax steps)",
                     lambda k: f"{torch.cuda.max_memory_allocated(device) / GIB:.2f} GiB"
                     if k == "torch" else f"{jax_peak:.2f} GiB")
    else:
        memory = row("host max RSS of the whole process (jax + torch)",
                     lambda k: f"{rss[0]:.2f} GiB before / {rss[1]:.2f} GiB after timing"
                     if k == "excluded" else "(same process)")
    every = config.checkpoint.every_steps
    save_percent = 100 * np.mean(saves) / (np.mean(t_step["included"]) * every)
    rows = [
        row("step", COLUMNS.get),
        ("---",) * (len(steps) + 1),
        row(f"images/s (B = {config.input.batch_size}; mean ± std, {_BLOCKS.value} blocks of "
            f"{_STEPS.value} steps)", lambda k: mean_std(images[k], ".1f")),
        row("step time (ms)", lambda k: mean_std(1e3 * t_step[k], ".0f")),
        *([row("ratio ssl_jax / PyTorch (per block)", ratio)] if "torch" in steps else []),
        row("compile (s)", compile_seconds),
        row("GFLOP per step per device (XLA cost analysis, lowered)", lambda k: flops(k, 0)),
        row("achieved GFLOP/s", lambda k: flops(k, 1)),
        row("MFU", lambda k: flops(k, 2)),
        memory,
        row(f"checkpoint save blocks the loop (mean of {len(saves)}; % of {every} steps)",
            lambda k: f"{np.mean(saves):.2f} s = {save_percent:.2g} %" if k == "included"
            else "-"),
    ]
    model = config.model.name + (f" ({config.model.stem} stem)" if config.model.name.startswith(
        "resnet") else f"/{config.model.patch_size}" if config.model.name.startswith("vit")
        else "")
    view = config.method.view.get("out_size", config.input.image_size)
    title = (f"{config.method.name}, {model}, views {view}x{view} (images "
             f"{config.input.image_size}x{config.input.image_size}), {config.model.dtype}" +
             (f"; PyTorch {'channels-last' if _CHANNELS_LAST.value else 'NCHW'}"
              if "torch" in steps else "; no PyTorch reference"))
    return title + "\n\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
    torch.set_num_threads(os.cpu_count())
    config = _CONFIG.value  # Not validated against data files: the data are random images.
    if _CONV_RULES.value == "lax":  # The models call it through the module at trace time.
        conv_backward.conv_general_dilated = jax.lax.conv_general_dilated
    device = torch.device(_DEVICE.value or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":  # Autotuned convs and TF32 matmuls, as XLA's defaults.
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    command = shlex.join(["python", *sys.argv])
    print(f"machine: {machine(device)}\ncommand: {command}", flush=True)
    dataset = random_dataset(config)
    batch_size, size = config.input.batch_size, config.input.image_size
    learning_rate = optim.scaled_learning_rate(config.optim, batch_size)
    steps = {"excluded": JaxStep(identity_views(config), dataset)}
    if _REFERENCE.value:
        reference = torch_reference.ReferenceStep(config, learning_rate, device,
                                                  _CHANNELS_LAST.value, _TORCH_COMPILE.value)
        generator = torch.Generator().manual_seed(0)
        views = [torch.randn(batch_size, len(config.input.mean), size, size,
                             generator=generator)
                 .to(device, memory_format=reference.memory_format) for _ in range(2)]
        steps["torch"] = TorchStep(reference, views)
        check_reference(config, steps["excluded"], reference, learning_rate)
    steps["included"] = JaxStep(config, dataset)
    print("warm-up seconds: " + ", ".join(f"{k} {step.timed(_WARMUP.value):.1f}"
                                          for k, step in steps.items()), flush=True)
    rss_before = max_rss_gib()
    seconds = {k: [] for k in steps}
    for block in range(_BLOCKS.value):
        for k, step in steps.items():
            seconds[k].append(step.timed(_STEPS.value))
        print(f"block {block}: " + ", ".join(
            f"{k} {batch_size * _STEPS.value / v[-1]:.1f} images/s"
            for k, v in seconds.items()), flush=True)
    rss = (rss_before, max_rss_gib())
    saves = checkpoint_seconds(config, steps["included"].state, _SAVES.value)
    t_step = {k: np.asarray(v) / _STEPS.value for k, v in seconds.items()}
    table = results_table(steps, t_step, rss, saves, config, device)
    print(f"\n{table}")
    if _APPEND.value:
        with open(_APPEND.value, "a") as f:
            f.write(f"\n### Step throughput, {datetime.date.today().isoformat()}\n\n"
                    f"Machine: {machine(device)}\n\n```bash\n{command}\n```\n\n{table}\n")
    if _PROFILE_DIR.value:  # Last: the table is out even if a profiler fails.
        print("\n" + profile(steps, _PROFILE_DIR.value, _PROFILE_STEPS.value), flush=True)


if __name__ == "__main__":
    app.run(main)
