"""The command line, clear errors for bad input, and no TensorFlow on import."""

import functools
import os
import pathlib
import subprocess
import sys

import pytest

from ssl_jax import methods, stages, validate
from test_train import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_main(*args, timeout=300):
    # Non-partitionable threefry compiles much faster on CPU (see conftest.py).
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_THREEFRY_PARTITIONABLE="false")
    return subprocess.run([sys.executable, "-m", "ssl_jax.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_quickstart_command_line_runs_every_stage(tmp_path):
    out = run_main("--config", "configs/quickstart.py:runlocal", "--workdir", str(tmp_path),
                   "--config.stages=('pretrain','knn')")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| representation |" in out.stdout and "| ssl |" in out.stdout
    assert (tmp_path / "results.json").is_file()


def test_unknown_config_key_is_refused_before_anything_runs(tmp_path):
    out = run_main("--config", "configs/quickstart.py:runlocal", "--workdir", str(tmp_path),
                   "--config.method.tempreature=0.1")
    assert out.returncode != 0
    assert "tempreature" in out.stderr
    assert not (tmp_path / "pretrain").exists()


@pytest.mark.parametrize("field,value,message", [
    ("method.name", "simclrr", "config.method.name='simclrr'"),
    ("model.name", "resnet19", "config.model.name='resnet19'"),
    ("input.dataset", "imagenet21k", "config.input.dataset='imagenet21k'"),
    ("optim.name", "adam_typo", "config.optim.name='adam_typo'"),
    ("input.batch_size", 60, "not a positive multiple of the number of devices (8, every device)"),
    ("stages", ("pretrain", "lineer_probe"), "config.stages='lineer_probe'"),
    # config_rules: by the longest dotted suffix with a rule, wherever the field is.
    ("method.view.crop_scale", (0.5,), "config.method.view.crop_scale=(0.5,): expected (low, "
     "high) with 0.0 < low <= high <= 1.0"),
    ("finetune.view.crop_ratio", (2.0, 1.0), "config.finetune.view.crop_ratio=(2.0, 1.0)"),
    ("log.every_steps", 0, "config.log.every_steps=0: expected an integer >= 1"),
    ("checkpoint.every_steps", -1, "config.checkpoint.every_steps=-1: expected an integer >= 0"),
    ("model.widths", (8, 0), "config.model.widths[1]=0: expected an integer >= 1"),
    ("optim.lr", float("nan"), "config.optim.lr=nan: expected a finite number in (0.0, inf]"),
    ("optim.frozen", (3,), "config.optim.frozen[0]=3: expected a string"),
    ("method.projector.hidden_dim", 0, "config.method.projector.hidden_dim=0"),
    ("mesh.num_devices", 3, "(3, config.mesh.num_devices)"),
    ("mesh.num_devices", 64, "config.mesh.num_devices=64: only 8 devices are available"),
])
def test_bad_config_values_name_the_field(field, value, message):
    config = load_config("quickstart")
    *sections, key = field.split(".")
    setattr(functools.reduce(getattr, sections, config), key, value)
    with pytest.raises(ValueError) as error:
        validate.validate(config)
    assert message in str(error.value)


def test_missing_data_directory_names_the_path(tmp_path):
    config = load_config("simclr_mnist")
    config.input.data_dir = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        validate.validate(config)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        stages.sources.load(config.input)


def test_import_does_not_import_tensorflow(tmp_path):
    """Every module of the in-memory path imports with TensorFlow absent: a stand-in
    `tensorflow` package that fails on import shadows any installed one."""
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(
        "raise ImportError('ssl_jax imported tensorflow')\n")
    modules = [f"ssl_jax.{p.stem}" for p in (REPO / "ssl_jax").glob("*.py")]
    modules += [f"ssl_jax.{p.parent.name}.{p.stem}" for p in (REPO / "ssl_jax").glob("*/*.py")]
    code = "import importlib, sys\n" + "".join(
        f"importlib.import_module({m!r})\n" for m in modules if not m.endswith("__init__"))
    code += "sys.exit('tensorflow' in sys.modules)\n"
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(modules) > 20


CONFIG_VARIANTS = [(p.stem, arg) for p in sorted((REPO / "configs").glob("*.py"))
                   for arg in (None, "runlocal")] + [("mocov3_cifar10", "vit,runlocal")] + [
    (name, arg) for name in ("autoencoder_mnist", "denoising_autoencoder_mnist",
                             "autoencoder_cifar10", "denoising_autoencoder_cifar10")
    for arg in ("mlp", "mlp,runlocal")]


@pytest.mark.parametrize("name,arg", CONFIG_VARIANTS)
def test_every_config_file_and_its_runlocal_variant_validate(name, arg, shared_data):
    """Each config (and `:runlocal`) loads, names a known method, and passes the up-front
    checks, with the data it reads (TFDS configs: only their fields)."""
    config = load_config(name, arg)
    if config.input.dataset != "tfds":
        validate.validate(config)
    assert config.method.name in (*methods.METHODS, "yarowsky")
