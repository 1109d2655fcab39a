"""I-JEPA's multi-block masks, with static shapes: per image, M target blocks and one
context block (with the target patches removed) as fixed-length lists of patch indices.

Assran et al., "Self-Supervised Learning from Images with a Joint-Embedding Predictive
Architecture", CVPR 2023 (arXiv:2301.08243), sec. 3.

On a grid of H x W patches (N = HW, raster order), a block size is drawn as

    s ~ U[s_lo, s_hi),  a ~ U[a_lo, a_hi)          (independently)
    A = floor(s N)                                 patches the block should cover
    h = clip(round(sqrt(A a)), 1, H),  w = clip(round(sqrt(A / a)), 1, W)

(round half to even; a = h / w). Per step (one call):

  targets  ONE size for the whole batch from `target_scale` (0.15, 0.2) and
           `target_aspect` (0.75, 1.5); each of the M = `num_targets` (4) blocks of each
           image has its top-left corner uniform over the (H - h + 1)(W - w + 1) positions.
  context  ONE size for the batch from `context_scale` (0.85, 1.0) and aspect 1; per
           image the block minus every target patch of that image. Its corner is uniform
           among the corners that leave at least `min_context` (10) patches, or, when no
           corner does, the corner that leaves the most (ties at random).

Sizes are traced values, so each block is a boolean mask over the grid (coordinates
compared with the corner and size) and the masks become index lists: the true entries
first, in raster order, padded to a static length with index 0 and a False validity
flag. The lengths are the largest areas the bounds allow on this grid, computed in NumPy
(`max_block_area`): L_t for a target block, L_c for the context.

Choices against the official collator (facebookresearch/ijepa, src/masks/multiblock.py):
  * Scale and aspect ratio are drawn independently, as the paper describes; the official
    code uses one uniform draw for both, so there its larger blocks are always the
    taller ones.
  * Corners range over every position and h = H, w = W are allowed. The official code
    caps h <= H - 1 and draws the corner with an exclusive upper bound, so no block ever
    covers the last row or column (on a 7x7 grid its 6x6 context always sits in the
    top-left corner).
  * Lists are padded, not truncated: the official code cuts every mask of the batch to
    the shortest one, dropping context patches (its target blocks all have h w patches,
    as here, so for them the cut changes nothing).
  * The context never overlaps a target. The official code retries random corners 20
    times and then relaxes the constraint, letting target patches into the context;
    here every corner is tried at once (the limit of its rejection sampling).

Non-empty context: every patch of the grid lies in the context block at some corner,
so a corner that keeps a patch exists unless the targets cover the whole grid. `check`
refuses bounds where M L_t >= N, i.e. where M blocks could cover it; with them the
context is never empty. (7x7 grid: L_t = 12, M L_t = 48 < 49; 8x8: 48 < 64.)

Config (`config.method.masks`): num_targets, target_scale, target_aspect,
context_scale, min_context.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

CONTEXT_ASPECT = (1.0, 1.0)

Grid = tuple[int, int]
Interval = tuple[float, float]


def area_range(grid: Grid, scale: Interval) -> tuple[int, int]:
    """(lowest, highest) value of A = floor(s N), s in [scale)."""
    n = grid[0] * grid[1]
    return math.floor(scale[0] * n), math.floor(scale[1] * n)


def _roundings(x: float) -> set[int]:
    """round(x), both neighbours when x sits on a .5 tie (float rounding may go either way)."""
    return {math.floor(x + 0.5), math.ceil(x - 0.5)}


def block_sizes(grid: Grid, scale: Interval, aspect: Interval) -> set[tuple[int, int]]:
    """Every (h, w) the size rule (module docstring) can give with these bounds.

    For each area A, h and w are step functions of a that change where sqrt(A a) or
    sqrt(A / a) crosses k + 1/2; evaluating at those points, at the bounds and between
    consecutive points visits every value (ties count both ways, so the set may hold a
    size reached only on a tie).
    """
    height, width = grid
    sizes = set()
    low, high = area_range(grid, scale)
    for area in range(max(low, 1), max(high, 1) + 1):
        cuts = [(k + 0.5) ** 2 / area for k in range(height + 1)]
        cuts += [area / (k + 0.5) ** 2 for k in range(width + 1)]
        points = sorted({aspect[0], aspect[1], *(c for c in cuts if aspect[0] < c < aspect[1])})
        probes = points + [(p + q) / 2 for p, q in zip(points, points[1:])]
        for a in probes:
            for h in _roundings(math.sqrt(area * a)):
                for w in _roundings(math.sqrt(area / a)):
                    sizes.add((min(max(h, 1), height), min(max(w, 1), width)))
    return sizes


def max_block_area(grid: Grid, scale: Interval, aspect: Interval) -> int:
    """The static list length of a block: the largest h w the bounds allow."""
    return max(h * w for h, w in block_sizes(grid, scale, aspect))


def check(config: ml_collections.ConfigDict, grid: Grid):
    """ValueError naming the `config.method.masks` field that cannot make valid masks."""
    field = "config.method.masks"
    if not (isinstance(config.num_targets, int) and config.num_targets >= 1):
        raise ValueError(f"{field}.num_targets={config.num_targets!r}: must be an integer >= 1")
    for name in ("target_scale", "context_scale"):
        low, high = config[name]
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"{field}.{name}={tuple(config[name])}: need 0 < low <= high <= 1")
    low, high = config.target_aspect
    if not 0.0 < low <= high:
        raise ValueError(f"{field}.target_aspect={tuple(config.target_aspect)}: need "
                         "0 < low <= high")
    if not (isinstance(config.min_context, int) and config.min_context >= 1):
        raise ValueError(f"{field}.min_context={config.min_context!r}: must be an integer >= 1")
    target_length = max_block_area(grid, config.target_scale, config.target_aspect)
    if config.num_targets * target_length >= grid[0] * grid[1]:
        raise ValueError(
            f"{field}: num_targets={config.num_targets} blocks of up to {target_length} "
            f"patches (target_scale={tuple(config.target_scale)}, target_aspect="
            f"{tuple(config.target_aspect)}) could cover the whole {grid[0]}x{grid[1]} grid "
            "and leave no context; lower num_targets or target_scale")


def draw_block_size(u: jax.Array, grid: Grid, scale: Interval, aspect: Interval
                    ) -> tuple[jax.Array, jax.Array]:
    """(h, w) int32 scalars by the size rule of the module docstring, from two U[0, 1)
    draws u: s = s_lo + (s_hi - s_lo) u[0], a = a_lo + (a_hi - a_lo) u[1]."""
    height, width = grid
    low, high = area_range(grid, scale)
    s = scale[0] + (scale[1] - scale[0]) * u[0]
    a = aspect[0] + (aspect[1] - aspect[0]) * u[1]
    area = jnp.clip(jnp.floor(s * (height * width)), low, high)
    h = jnp.clip(jnp.round(jnp.sqrt(area * a)), 1, height).astype(jnp.int32)
    w = jnp.clip(jnp.round(jnp.sqrt(area / a)), 1, width).astype(jnp.int32)
    return h, w


def rectangle(grid: Grid, top: jax.Array, left: jax.Array, h: jax.Array, w: jax.Array
              ) -> jax.Array:
    """`[N]` bool: the patches of rows [top, top + h) and columns [left, left + w)."""
    rows = jnp.arange(grid[0])[:, None]
    cols = jnp.arange(grid[1])[None, :]
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    return inside.reshape(-1)


def index_list(mask: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:
    """`[N]` bool -> (indices `[length]` of the true entries first, in raster order, padded
    with 0; validity `[length]`)."""
    indices = jnp.nonzero(mask, size=length, fill_value=0)[0].astype(jnp.int32)
    return indices, jnp.arange(length) < jnp.sum(mask)


def _context_corners(grid: Grid, sizes: set[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Static (tops, lefts) of every corner that a context block of some size can take."""
    tops = np.arange(grid[0] - min(h for h, _ in sizes) + 1)
    lefts = np.arange(grid[1] - min(w for _, w in sizes) + 1)
    tops, lefts = np.meshgrid(tops, lefts, indexing="ij")
    return tops.reshape(-1), lefts.reshape(-1)


def uniform_integer(u: jax.Array, n: jax.Array) -> jax.Array:
    """floor(u n) as int32, uniform over {0, ..., n - 1} for u ~ U[0, 1) (capped at n - 1
    against float rounding)."""
    return jnp.minimum(jnp.floor(u * n), n - 1).astype(jnp.int32)


def _example_masks(u: jax.Array, grid: Grid, target_size, context_size, corners,
                   num_targets: int, min_context: int) -> tuple[jax.Array, jax.Array]:
    """One image's (context `[N]`, targets `[M, N]`) boolean masks, from its U[0, 1) draws
    u: M target tops, M target lefts, then one tie-breaking score per context corner."""
    (target_h, target_w), (context_h, context_w) = target_size, context_size
    u_tops, u_lefts, noise = jnp.split(u, [num_targets, 2 * num_targets])
    tops = uniform_integer(u_tops, grid[0] - target_h + 1)
    lefts = uniform_integer(u_lefts, grid[1] - target_w + 1)
    targets = jax.vmap(rectangle, (None, 0, 0, None, None))(grid, tops, lefts, target_h,
                                                             target_w)
    corner_tops, corner_lefts = (jnp.asarray(c) for c in corners)
    fits = (corner_tops <= grid[0] - context_h) & (corner_lefts <= grid[1] - context_w)
    blocks = jax.vmap(rectangle, (None, 0, 0, None, None))(grid, corner_tops, corner_lefts,
                                                            context_h, context_w)
    kept = blocks & ~jnp.any(targets, axis=0)
    counts = jnp.sum(kept, axis=1)
    acceptable = fits & (counts >= min_context)
    score = jnp.where(jnp.any(acceptable), jnp.where(acceptable, noise, -1.0),
                      jnp.where(fits, counts + 0.5 * noise, -1.0))
    return kept[jnp.argmax(score)], targets


def sample_multiblock(rng: jax.Array, batch_size: int, grid: Grid,
                      config: ml_collections.ConfigDict) -> dict:
    """The masks of one step (module docstring), a pure function of `rng`:

        context_idx [B, L_c] int32, context_valid [B, L_c] bool,
        target_idx [B, M, L_t] int32, target_valid [B, M, L_t] bool.

    Two draws in all: four uniforms for the two sizes, and a row of uniforms per
    example, so example i's corners do not depend on how the batch is sharded. (Each
    traced Threefry hash costs XLA:CPU about 0.3 s of compilation, so the draws are not
    made op by op.)
    """
    target_bounds = (tuple(config.target_scale), tuple(config.target_aspect))
    context_bounds = (tuple(config.context_scale), CONTEXT_ASPECT)
    sizes_key, examples_key = jax.random.split(rng)
    u_sizes = jax.random.uniform(sizes_key, (4,))
    target_size = draw_block_size(u_sizes[:2], grid, *target_bounds)
    context_size = draw_block_size(u_sizes[2:], grid, *context_bounds)
    corners = _context_corners(grid, block_sizes(grid, *context_bounds))
    u_examples = jax.random.uniform(
        examples_key, (batch_size, 2 * config.num_targets + len(corners[0])))
    context_length = max_block_area(grid, *context_bounds)
    target_length = max_block_area(grid, *target_bounds)
    context, targets = jax.vmap(
        lambda u: _example_masks(u, grid, target_size, context_size, corners,
                                 config.num_targets, config.min_context)
    )(u_examples)
    context_idx, context_valid = jax.vmap(lambda m: index_list(m, context_length))(context)
    target_idx, target_valid = jax.vmap(jax.vmap(lambda m: index_list(m, target_length)))(
        targets)
    return dict(context_idx=context_idx, context_valid=context_valid,
                target_idx=target_idx, target_valid=target_valid)
