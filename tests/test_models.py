"""Backbones and heads: shapes, parameter counts against torchvision/timm, BN modes, dtypes."""

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ssl_jax.models import BACKBONES, build_backbone, default_model_config, feature_dim
from ssl_jax.models.convnet import ConvNet
from ssl_jax.models.heads import LinearClassifier, MLPHead
from ssl_jax.models.resnet import resnet18, resnet50
from ssl_jax.models.vit import TransformerBlock, ViT, sincos_2d


# Networks are compiled without LLVM optimisation: the threefry RNG of parameter init
# otherwise takes ~20 s to compile per network on a 2-core CPU.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def num_params(tree) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(tree))


def images(shape, batch=4, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, *shape)), jnp.float32)


@functools.cache
def jitted(method, **kwargs):
    """`jax.jit(partial(method, **kwargs))` compiled with `FAST_COMPILE`; one per call kind."""
    return jax.jit(functools.partial(method, **kwargs), compiler_options=FAST_COMPILE)


def init(module, x, **kwargs):
    """`module.init(key, x, train=False, **kwargs)`."""
    return jitted(module.init, train=False, **kwargs)(jax.random.key(1), x)


def apply(module, variables, x, **kwargs):
    """`module.apply(variables, x, **kwargs)`; list-valued `mutable` as a tuple."""
    if isinstance(kwargs.get("mutable"), list):
        kwargs["mutable"] = tuple(kwargs["mutable"])
    return jitted(module.apply, **kwargs)(variables, x)


def intermediate_shapes(module, x, names):
    """Output shapes of the submodules called `names`, from an abstract (free) init."""
    def run(x):
        return module.init_with_output(jax.random.key(0), x, train=False, mutable=True,
                                       capture_intermediates=lambda mdl, _: mdl.name in names)
    _, state = jax.eval_shape(run, x)
    return {name: state["intermediates"][name]["__call__"][0].shape for name in names}


def tiny_vit(**kwargs):
    return ViT(width=16, depth=2, num_heads=2, patch_size=4, **kwargs)


# A tiny member of every backbone family, with an input image shape it accepts. (ResNet-50
# is ResNet-18's code with another block and ~3x the compile time: it is checked abstractly.)
TINY = {
    "convnet": (ConvNet(widths=(4, 8, 16)), (8, 8, 1)),
    "resnet18": (resnet18(width=4), (16, 16, 3)),
    "vit": (tiny_vit(), (16, 16, 3)),
}


@functools.cache
def tiny(family):
    """(module, inputs [4, ...], variables, eval output) of a `TINY` family, made once."""
    module, shape = TINY[family]
    x = images(shape)
    out, variables = jitted(module.init_with_output, train=False)(jax.random.key(1), x)
    return module, x, variables, out


@pytest.mark.parametrize("family", sorted(TINY))
def test_tiny_backbones_output_pooled_features(family):
    module, _, _, out = tiny(family)
    assert out.shape == (4, module.feature_dim)
    assert out.dtype == jnp.float32
    assert np.isfinite(np.asarray(out)).all()


@pytest.mark.parametrize("size,widths,spatial", [
    (8, (2, 2, 2, 2), [8, 8, 4, 4, 2, 2, 2, 2]),  # no pooling below 2x2
    (28, (2, 2, 2), [28, 28, 14, 14, 7, 7]),
])
def test_convnet_pools_each_stage_until_2x2(size, widths, spatial):
    names = [f"Conv_{i}" for i in range(2 * len(widths))]
    shapes = intermediate_shapes(ConvNet(widths=widths), jnp.zeros((1, size, size, 1)), names)
    assert [shapes[name][1] for name in names] == spatial


@pytest.mark.parametrize("stem,stem_size,stage1_size", [("cifar", 32, 32), ("imagenet", 16, 8)])
def test_resnet_stems(stem, stem_size, stage1_size):
    """CIFAR stem keeps 32x32 into the first stage; the ImageNet stem divides by 4."""
    names = ["stem_conv", "stage1_block0", "stage4_block1"]
    shapes = intermediate_shapes(resnet18(width=4, stem=stem), jnp.zeros((1, 32, 32, 3)), names)
    assert shapes["stem_conv"] == (1, stem_size, stem_size, 4)
    assert shapes["stage1_block0"] == (1, stage1_size, stage1_size, 4)
    assert shapes["stage4_block1"] == (1, stage1_size // 8, stage1_size // 8, 32)


def test_resnet_rejects_unknown_stem():
    with pytest.raises(ValueError, match="stem='vgg'.*cifar.*imagenet"):
        jax.eval_shape(lambda: resnet18(width=4, stem="vgg").init(
            jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False))


@pytest.mark.parametrize("factory,last_norm", [(resnet18, "BatchNorm_1"),
                                               (resnet50, "BatchNorm_2")])
@pytest.mark.parametrize("zero_init_residual", [False, True])
def test_resnet_zero_init_residual(factory, last_norm, zero_init_residual):
    """The last BN scale of every block starts at 0 with `zero_init_residual`, else at 1."""
    module = factory(width=2, zero_init_residual=zero_init_residual)
    x = jnp.zeros((1, 8, 8, 3))

    def block_scales(key):  # only these leaves are computed: XLA drops the rest of init
        params = module.init(key, x, train=False)["params"]
        return [(params[name]["BatchNorm_0"]["scale"], params[name][last_norm]["scale"])
                for name in params if name.startswith("stage")]

    scales = jax.jit(block_scales, compiler_options=FAST_COMPILE)(jax.random.key(0))
    assert len(scales) == sum(module.stage_sizes)
    for first, last in scales:
        np.testing.assert_array_equal(first, 1.0)
        np.testing.assert_array_equal(last, 0.0 if zero_init_residual else 1.0)


# Reference counts without the classifier: torchvision resnet18 11,689,512 - fc 513,000;
# resnet50 25,557,032 - fc 2,049,000 (the CIFAR stem: 3x3x3x64 instead of 7x7x3x64 weights);
# timm vit_small_patch16_224 22,050,664 - head 385,000; vit_base_patch16_224 86,567,656 -
# head 769,000. ResNets match exactly; ViTs lack timm's CLS position embedding (D params).
@pytest.mark.parametrize("name,stem,reference,rel_tol", [
    ("resnet18", "imagenet", 11_176_512, 0.0),
    ("resnet18", "cifar", 11_176_512 - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64, 0.0),
    ("resnet50", "imagenet", 23_508_032, 0.0),
    ("vit_s", "imagenet", 21_665_664, 0.01),
    ("vit_b", "imagenet", 85_798_656, 0.01),
])
def test_parameter_counts_match_torchvision_and_timm(name, stem, reference, rel_tol):
    config = default_model_config(name)
    config.stem = stem
    module = build_backbone(config)
    variables = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)),
                                                   train=False))
    count = num_params(variables["params"])
    assert abs(count - reference) <= rel_tol * reference, (count, reference)


def test_batchnorm_updates_statistics_in_train_mode_only():
    module, x, variables, _ = tiny("convnet")
    stats = variables["batch_stats"]
    _, state = apply(module, variables, x, train=True, mutable=["batch_stats", "intermediates"],
                     capture_intermediates=lambda mdl, _: mdl.name == "Conv_0")
    conv0 = state["intermediates"]["Conv_0"]["__call__"][0]
    new = state["batch_stats"]
    # Flax momentum 0.9 == PyTorch momentum 0.1: running = 0.9 * running + 0.1 * batch.
    np.testing.assert_allclose(new["BatchNorm_0"]["mean"], 0.1 * conv0.mean(axis=(0, 1, 2)),
                               rtol=1e-5, atol=1e-7)
    for old_leaf, new_leaf in zip(jax.tree.leaves(stats), jax.tree.leaves(new)):
        assert not np.allclose(old_leaf, new_leaf)

    y, eval_updates = apply(module, variables, x, train=False, mutable=["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, eval_updates["batch_stats"], stats)
    # ... and eval mode normalises with the running statistics, not the batch's.
    shifted = jax.tree.map(lambda s: s + 1.0, stats)
    y_shifted = apply(module, {**variables, "batch_stats": shifted}, x, train=False)
    assert not np.allclose(y, y_shifted)


@pytest.mark.parametrize("family", sorted(TINY))
def test_eval_is_deterministic_and_per_example(family):
    module, x, variables, _ = tiny(family)
    out = apply(module, variables, x, train=False)
    np.testing.assert_array_equal(apply(module, variables, x, train=False), out)
    x_changed = x.at[1].set(images(x.shape[1:], batch=1, seed=7)[0])
    changed = apply(module, variables, x_changed, train=False)
    np.testing.assert_allclose(changed[0], out[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(changed[1], out[1])
    if "batch_stats" in variables:  # train-mode BN mixes the batch: example 0 moves
        train_out, _ = apply(module, variables, x, train=True, mutable=["batch_stats"])
        train_changed, _ = apply(module, variables, x_changed, train=True,
                                 mutable=["batch_stats"])
        assert not np.allclose(train_changed[0], train_out[0])


@pytest.mark.parametrize("pool,num_tokens", [("cls", 17), ("gap", 16)])
def test_vit_pooling_and_tokens(pool, num_tokens):
    module, x, variables, _ = tiny("vit")
    if pool == "gap":
        module = module.clone(pool="gap")
        variables = {"params": {k: v for k, v in variables["params"].items() if k != "cls"}}
    pooled, tokens = apply(module, variables, x, train=False, return_tokens=True)
    assert tokens.shape == (4, num_tokens, 16)
    expected = tokens[:, 0] if pool == "cls" else tokens.mean(axis=1)
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)
    np.testing.assert_array_equal(apply(module, variables, x, train=False), pooled)
    abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), x, train=False))
    assert ("cls" in abstract["params"]) == (pool == "cls")


def test_vit_position_embeddings():
    x = images((16, 8, 3), batch=2)  # a non-square 4x2 patch grid
    learned = jax.eval_shape(lambda: tiny_vit().init(jax.random.key(0), x, train=False))
    assert learned["params"]["pos_embed"].shape == (1, 8, 16)
    fixed = tiny_vit(posemb="sincos2d")
    _, _, variables, _ = tiny("vit")  # the same parameters, minus the learned embeddings
    params = {k: v for k, v in variables["params"].items() if k != "pos_embed"}
    abstract = jax.eval_shape(lambda: fixed.init(jax.random.key(0), x, train=False))
    assert jax.tree.structure(abstract["params"]) == jax.tree.structure(params)
    out = apply(fixed, {"params": params}, x, train=False)
    assert out.shape == (2, 16) and np.isfinite(np.asarray(out)).all()


def test_sincos_2d():
    table = sincos_2d(3, 4, 8)  # 3 rows x 4 columns of patches, dim 8
    assert table.shape == (12, 8) and table.dtype == np.float32
    np.testing.assert_allclose(table[0], [0, 0, 1, 1, 0, 0, 1, 1])
    grid = table.reshape(3, 4, 8)
    np.testing.assert_allclose(grid[:, :, :4], grid[:1, :, :4].repeat(3, axis=0))  # x only
    np.testing.assert_allclose(grid[:, :, 4:], grid[:, :1, 4:].repeat(4, axis=1))  # y only
    np.testing.assert_allclose(grid[0, 1, 0], np.sin(1.0), rtol=1e-6)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(2, 2, 6)


@pytest.mark.parametrize("size", [(30, 30), (32, 24)])
def test_vit_rejects_image_size_not_divisible_by_patch(size):
    with pytest.raises(ValueError, match=rf"{size[0]}x{size[1]}.*patch size 16"):
        jax.eval_shape(lambda: ViT(width=16, depth=1, num_heads=2).init(
            jax.random.key(0), jnp.zeros((1, *size, 3)), train=False))


@pytest.mark.parametrize("field,value", [("pool", "max"), ("posemb", "rope")])
def test_vit_rejects_unknown_options(field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        jax.eval_shape(lambda: tiny_vit(**{field: value}).init(
            jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False))


def test_transformer_block_respects_a_causal_mask():
    block = TransformerBlock(num_heads=2)
    x = images((6, 8), batch=2)
    mask = nn.make_causal_mask(jnp.ones((2, 6)))
    variables = jax.jit(block.init, compiler_options=FAST_COMPILE)(jax.random.key(0), x, mask)
    run = jax.jit(block.apply, compiler_options=FAST_COMPILE)
    out = run(variables, x, mask)
    changed = run(variables, x.at[:, 4:].set(0.0), mask)
    assert out.shape == x.shape
    np.testing.assert_allclose(changed[:, :4], out[:, :4], rtol=1e-5, atol=1e-6)
    assert not np.allclose(changed[:, 4:], out[:, 4:])


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_mlp_head_shapes_and_layers(num_layers):
    head = MLPHead(hidden_dim=32, out_dim=8, num_layers=num_layers)
    x = images((16,), batch=4)
    variables = init(head, x)
    out, _ = apply(head, variables, x, train=True, mutable=["batch_stats"])
    assert out.shape == (4, 8)
    params = variables["params"]
    assert sorted(params) == sorted([f"Dense_{i}" for i in range(num_layers)]
                                    + [f"BatchNorm_{i}" for i in range(num_layers - 1)])
    for i in range(num_layers - 1):  # followed by BN: no redundant bias
        assert "bias" not in params[f"Dense_{i}"]
    assert "bias" in params[f"Dense_{num_layers - 1}"]
    no_bn = jax.eval_shape(lambda: MLPHead(32, 8, num_layers, use_bn=False).init(
        jax.random.key(0), x, train=False))
    assert "batch_stats" not in no_bn
    assert all("bias" in layer for layer in no_bn["params"].values())


def test_mlp_head_last_bn_standardises_in_train_mode():
    head = MLPHead(hidden_dim=32, out_dim=8, num_layers=2, last_bn=True)
    x = images((16,), batch=64) * 5.0 + 2.0
    variables = init(head, x)
    assert sorted(variables["params"]) == ["BatchNorm_0", "Dense_0", "Dense_1"]
    assert "bias" not in variables["params"]["Dense_1"]
    assert "BatchNorm_1" in variables["batch_stats"]  # the last BN: statistics, no affine
    out, _ = apply(head, variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.var(axis=0), 1.0, atol=1e-3)


def test_linear_classifier():
    classifier = LinearClassifier(num_classes=10)
    x = images((16,), batch=3).astype(jnp.bfloat16)
    variables = jitted(classifier.init)(jax.random.key(0), x)
    logits = apply(classifier, variables, x)
    assert logits.shape == (3, 10) and logits.dtype == jnp.float32
    assert num_params(variables) == 16 * 10 + 10


def test_build_backbone_rejects_unknown_names_and_dtypes():
    config = default_model_config("convnet")
    config.name = "resnet101"
    with pytest.raises(ValueError, match="resnet101") as error:
        build_backbone(config)
    for name in BACKBONES:
        assert repr(name) in str(error.value)
    with pytest.raises(ValueError, match="resnet101"):
        default_model_config("resnet101")
    config = default_model_config("convnet")
    config.dtype = "float16"
    with pytest.raises(ValueError, match="float16.*bfloat16"):
        build_backbone(config)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_each_backbone_reads_only_its_declared_fields(name):
    """Built from only name, dtype and its own fields; feature_dim matches the output."""
    defaults = default_model_config(name)
    fields = ("name", "dtype", *BACKBONES[name].fields)
    config = ml_collections.ConfigDict({field: defaults[field] for field in fields})
    x = jnp.ones((2, 32), jnp.int32) if name == "text_transformer" else jnp.zeros((2, 32, 32, 3))
    for cfg in (config, defaults):
        module = build_backbone(cfg)
        out, _ = jax.eval_shape(
            lambda: module.init_with_output(jax.random.key(0), x, train=False))
        assert out.shape == (2, feature_dim(cfg))


def test_build_backbone_passes_fields_through():
    config = default_model_config("resnet18")
    config.update(dict(width=8, stem="imagenet", zero_init_residual=True, dtype="bfloat16"))
    module = build_backbone(config)
    assert (module.width, module.stem, module.zero_init_residual, module.dtype) == (
        8, "imagenet", True, jnp.bfloat16)
    assert feature_dim(config) == 64
    config = default_model_config("convnet")
    config.widths = [4, 8]  # e.g. from the command line
    assert build_backbone(config).widths == (4, 8) and feature_dim(config) == 8
    config = default_model_config("vit_ti")
    config.update(dict(patch_size=4, pool="gap", posemb="sincos2d"))
    module = build_backbone(config)
    assert (module.width, module.depth, module.num_heads, module.patch_size, module.pool,
            module.posemb) == (192, 12, 3, 4, "gap", "sincos2d")


@pytest.mark.parametrize("family", sorted(TINY))
def test_bfloat16_activations_float32_params(family):
    module, x, variables, _ = tiny(family)
    module = module.clone(dtype=jnp.bfloat16)
    abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), x, train=False))
    assert jax.tree.structure(abstract) == jax.tree.structure(variables)
    for leaf in jax.tree.leaves(abstract):
        assert leaf.dtype == jnp.float32
    out, state = apply(module, variables, x, train=True, mutable=["batch_stats", "intermediates"],
                       capture_intermediates=True)
    assert out.dtype == jnp.bfloat16
    activations = jax.tree.leaves(state["intermediates"])
    assert len(activations) > 3
    for activation in activations:
        assert activation.dtype == jnp.bfloat16
    for leaf in jax.tree.leaves(state.get("batch_stats", {})):
        assert leaf.dtype == jnp.float32


# --- Encoding a subset of patches; the masked-token predictor (MAE, I-JEPA) ------------------

def _keep_with_padding(subset, pad: int):
    """`subset` [B, K] padded with `pad` entries pointing at patch 0, marked invalid."""
    batch = subset.shape[0]
    keep = jnp.concatenate([subset, jnp.zeros((batch, pad), jnp.int32)], axis=1)
    valid = jnp.concatenate([jnp.ones(subset.shape, bool), jnp.zeros((batch, pad), bool)], 1)
    return keep, valid


@pytest.mark.parametrize("pool", ["cls", "gap"])
def test_vit_encodes_a_subset_of_patches_and_ignores_padding(pool):
    module, x, variables, _ = tiny("vit")  # 16 patches
    if pool == "gap":
        module = module.clone(pool="gap")
        variables = {"params": {k: v for k, v in variables["params"].items() if k != "cls"}}
    run = jax.jit(functools.partial(module.apply, train=False, return_tokens=True))
    order = jnp.asarray(np.stack([np.random.default_rng(i).permutation(16) for i in range(4)]),
                        jnp.int32)
    # All patches in any order: the same pooled feature, the tokens permuted with them.
    full_pooled, full_tokens = run(variables, x)
    pooled, tokens = run(variables, x, keep=order)
    np.testing.assert_allclose(pooled, full_pooled, rtol=1e-5, atol=1e-5)
    first = 1 if pool == "cls" else 0
    np.testing.assert_allclose(
        tokens[:, first:], jnp.take_along_axis(full_tokens[:, first:], order[:, :, None], 1),
        rtol=1e-4, atol=1e-5)
    # Five patches, then the same five padded with three invalid entries: same result.
    subset = order[:, :5]
    pooled_subset, tokens_subset = run(variables, x, keep=subset)
    keep, valid = _keep_with_padding(subset, 3)
    pooled_padded, tokens_padded = run(variables, x, keep=keep, keep_valid=valid)
    np.testing.assert_allclose(pooled_padded, pooled_subset, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tokens_padded[:, :first + 5], tokens_subset, rtol=1e-5, atol=1e-5)
    assert not np.allclose(pooled_subset, full_pooled, atol=1e-3)  # the subset matters


def test_masked_token_predictor_uses_context_and_positions_and_ignores_padding():
    from ssl_jax.models.token_predictor import MaskedTokenPredictor

    module = MaskedTokenPredictor(grid=(4, 4), width=16, depth=2, num_heads=2, out_dim=5)
    rng = np.random.default_rng(0)
    context = jnp.asarray(rng.normal(size=(2, 6, 12)), jnp.float32)
    context_positions = jnp.asarray(np.stack([rng.permutation(16)[:6] for _ in range(2)]),
                                    jnp.int32)
    queries = jnp.asarray([[3, 7, 9], [0, 1, 15]], jnp.int32)
    variables = module.init(jax.random.key(0), context, context_positions, queries)
    run = jax.jit(module.apply)
    out = run(variables, context, context_positions, queries)
    assert out.shape == (2, 3, 5) and out.dtype == jnp.float32
    # The context order does not matter (positions travel with the tokens).
    flip = jnp.arange(5, -1, -1)
    np.testing.assert_allclose(run(variables, context[:, flip], context_positions[:, flip],
                                   queries), out, rtol=1e-5, atol=1e-5)
    # Padding entries in the context and among the queries change nothing.
    padded_context = jnp.concatenate([context, jnp.full((2, 2, 12), 9.0)], axis=1)
    padded_positions = jnp.concatenate([context_positions, jnp.zeros((2, 2), jnp.int32)], 1)
    context_valid = jnp.arange(8)[None].repeat(2, 0) < 6
    padded_queries = jnp.concatenate([queries, jnp.full((2, 1), 4, jnp.int32)], axis=1)
    query_valid = jnp.arange(4)[None].repeat(2, 0) < 3
    padded = run(variables, padded_context, padded_positions, padded_queries,
                 context_valid, query_valid)
    np.testing.assert_allclose(padded[:, :3], out, rtol=1e-5, atol=1e-5)
    # Each query's prediction follows its position: reordering queries reorders the
    # outputs, other positions give other outputs; and it depends on the context tokens.
    np.testing.assert_allclose(run(variables, context, context_positions, queries[:, ::-1]),
                               out[:, ::-1], rtol=1e-5, atol=1e-5)
    assert not np.allclose(run(variables, context, context_positions, (queries + 1) % 16), out,
                           atol=1e-3)
    assert not np.allclose(run(variables, context * 2, context_positions, queries), out)


@pytest.mark.parametrize("family", ["resnet18", "vit"])
def test_remat_recomputes_blocks_with_the_same_parameters_loss_and_gradients(family):
    """`remat=True`: the same parameter tree, loss and gradients (float32, to rounding), and
    the gradient's program holds one `checkpoint` (recomputed) region per block, none without.
    (Whether that saves memory is up to XLA's scheduler: on GPU and TPU it does; XLA's CPU
    backend here schedules the recomputation early and its temp buffers grow ~7 %.)"""
    module, shape, blocks = {
        "resnet18": (functools.partial(resnet18, width=4), (16, 16, 3), 8),
        "vit": (functools.partial(ViT, width=16, depth=3, num_heads=2, patch_size=4),
                (16, 16, 3), 3)}[family]
    x = images(shape, batch=4)
    plain, remat = module(), module(remat=True)
    variables = init(plain, x)
    assert (jax.tree.structure(init(remat, x)["params"])
            == jax.tree.structure(variables["params"]))

    def loss_fn(net):
        def loss(params):
            out = net.apply({**variables, "params": params}, x, train=True,
                            mutable=["batch_stats"])[0]
            return jnp.mean(out ** 2)
        return jax.value_and_grad(loss)

    def checkpoints(net) -> int:
        jaxpr = jax.make_jaxpr(loss_fn(net))(variables["params"])
        return len(re.findall(r"= (?:remat2|checkpoint)\[", str(jaxpr)))  # Name by version.

    assert (checkpoints(plain), checkpoints(remat)) == (0, blocks)
    (loss1, grads1), (loss2, grads2) = (jax.jit(loss_fn(net))(variables["params"])
                                        for net in (plain, remat))
    np.testing.assert_allclose(loss2, loss1, rtol=1e-5)
    scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads1))  # Some are ~1e-15.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6 * scale),
                 grads1, grads2)
