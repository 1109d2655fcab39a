r"""PyTorch reference of one ssl_jax SimCLR / BYOL train step, for `bench/step_throughput.py`.

An independent re-implementation (it imports nothing from ssl_jax; it reads the same
`ml_collections` config) of the step ssl_jax jits, on two views that are already
augmented and normalised (float `[B, C, S, S]` each):

  backbone  ResNet-18 or ResNet-50 (He et al., "Deep Residual Learning for Image
            Recognition", CVPR 2016): BasicBlock x [2, 2, 2, 2], or Bottleneck (1x1 -> 3x3
            strided -> 1x1 x4, torchvision's "v1.5") x [3, 4, 6, 3], of widths w (1, 2, 4, 8),
            a strided 1x1 conv + BN shortcut where the shape changes, global average pool,
            no fc. Stem `cifar` (SimCLR, Chen et al., ICML 2020, arXiv:2002.05709, appendix
            B.9): 3x3 stride-1 conv -> BN -> ReLU, no max-pool; `imagenet`: 7x7 stride-2
            conv -> BN -> ReLU -> 3x3 stride-2 max-pool. Convs have no bias and
            Kaiming-normal (fan_out) weights; BN momentum 0.1, eps 1e-5.
            Or a ViT (Dosovitskiy et al., ICLR 2021) as ssl_jax's: p x p patch conv (with
            bias), learned (std 0.02) or fixed 2-D sin-cos position embeddings on the patch
            tokens, a zero-initialised CLS token in front when pooling 'cls', pre-LN blocks
            (LayerNorm eps 1e-6; multi-head self-attention with biased q/k/v/out projections,
            through `F.scaled_dot_product_attention`; MLP x4 with exact GELU), a final
            LayerNorm, then the CLS token or the mean of the tokens. Sizes: `vit_s` 384 wide,
            12 deep, 6 heads; `vit_b` 768, 12, 12; `vit` the config's width/depth/num_heads.
  heads     (Linear without bias -> BN -> ReLU) x (num_layers - 1) -> Linear, then a BN
            without scale or offset instead of the last bias when `last_bn`; Linear weights
            LeCun-normal truncated at 2 std, biases 0 (Flax's Dense defaults).
  SimCLR    u = l2-normalised [z1; z2] (2N rows), s_ij = u_i . u_j,
            l(i, j) = -log(exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau)),
            L = 1/(2N) sum_k [l(k, k+N) + l(k+N, k)]   (NT-Xent, both directions).
  BYOL      Grill et al., NeurIPS 2020 (arXiv:2006.07733): p = q(g(f(x))), target
            z' = g_t(f_t(x)) without gradient, BN in train mode;
            L = l(p1, z'2) + l(p2, z'1), l(p, z) = mean_i (2 - 2 cos(p_i, z_i)); after the
            optimizer step the target (backbone + projector) moves to
            target + (1 - tau)(online - target) with tau = config.method.ema.base (ssl_jax
            schedules tau over the run; the cost of the update is the same).
  LARS      You, Gitman, Ginsburg, "Large Batch Training of Convolutional Networks",
            arXiv:1708.03888, as optax.lars with ssl_jax's masks (weight decay and trust
            ratio only on parameters with ndim > 1, i.e. conv and linear weights):
              u = g + wd p,  u <- u * eta ||p|| / ||u|| (x 1 when a norm is 0)   (ndim > 1)
              u = g                                                             (others)
              m <- mu m - lr u,  p <- p + m     (momentum on the lr-scaled update)
            at a constant learning rate given by the caller.

`config.model.dtype == "bfloat16"` runs the network under bfloat16 autocast; losses are
float32. The two views are concatenated and go through the network in one pass, as in
ssl_jax (BatchNorm statistics over both views).
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class ResidualBlock(nn.Module):
    """ReLU(branch(x) + shortcut(x)); subclasses build `branch` and `shortcut`."""

    def forward(self, x):
        return F.relu(self.branch(x) + self.shortcut(x))


class BasicBlock(ResidualBlock):
    """3x3 conv -> BN -> ReLU -> 3x3 conv -> BN, + shortcut, ReLU."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, zero_init_residual: bool):
        super().__init__()
        self.branch = nn.Sequential(
            _conv(in_channels, width, 3, stride), nn.BatchNorm2d(width), nn.ReLU(),
            _conv(width, width, 3), _last_norm(width, zero_init_residual))
        self.shortcut = _shortcut(in_channels, width, stride)


class Bottleneck(ResidualBlock):
    """1x1 conv -> BN -> ReLU -> 3x3 (strided) -> BN -> ReLU -> 1x1 (x4) -> BN, + shortcut,
    ReLU."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, zero_init_residual: bool):
        super().__init__()
        out_channels = width * self.expansion
        self.branch = nn.Sequential(
            _conv(in_channels, width, 1), nn.BatchNorm2d(width), nn.ReLU(),
            _conv(width, width, 3, stride), nn.BatchNorm2d(width), nn.ReLU(),
            _conv(width, out_channels, 1), _last_norm(out_channels, zero_init_residual))
        self.shortcut = _shortcut(in_channels, out_channels, stride)


def _last_norm(channels: int, zero_init_residual: bool) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels)
    if zero_init_residual:
        nn.init.zeros_(norm.weight)
    return norm


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity, or a strided 1x1 conv + BN where the shape changes."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(_conv(in_channels, out_channels, 1, stride),
                         nn.BatchNorm2d(out_channels))


ARCHITECTURES = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet50": (Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
    """`[B, C, S, S]` -> `[B, feature_dim]` pooled features (no fc)."""

    def __init__(self, name: str, stem: str, in_channels: int, width: int,
                 zero_init_residual: bool):
        super().__init__()
        block, stage_sizes = ARCHITECTURES[name]
        if stem == "cifar":
            layers = [_conv(in_channels, width, 3), nn.BatchNorm2d(width), nn.ReLU()]
        else:
            layers = [_conv(in_channels, width, 7, 2), nn.BatchNorm2d(width), nn.ReLU(),
                      nn.MaxPool2d(3, 2, padding=1)]
        channels = width
        for stage, num_blocks in enumerate(stage_sizes):
            for i in range(num_blocks):
                layers.append(block(channels, width * 2**stage,
                                    2 if stage > 0 and i == 0 else 1, zero_init_residual))
                channels = width * 2**stage * block.expansion
        self.layers = nn.Sequential(*layers)
        self.feature_dim = channels

    def forward(self, x):
        return self.layers(x).mean(dim=(2, 3))


VIT_SIZES = {"vit_s": (384, 12, 6), "vit_b": (768, 12, 12)}  # width, depth, heads


class SelfAttention(nn.Module):
    """Multi-head self-attention with biased q/k/v and output projections."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(
            2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class TransformerBlock(nn.Module):
    """x + MHSA(LN(x)); x + MLP(LN(x)), MLP = Linear -> GELU -> Linear."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = SelfAttention(width, num_heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, int(width * mlp_ratio)), nn.GELU(),
                                 nn.Linear(int(width * mlp_ratio), width))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sincos_2d(height: int, width: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings `[height * width, dim]` (MAE's), raster order:
    columns sin(x w), cos(x w), sin(y w), cos(y w), w_k = 10000^(-k / (dim / 4))."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    out_x, out_y = xs.reshape(-1, 1) * omega, ys.reshape(-1, 1) * omega
    return torch.cat([out_x.sin(), out_x.cos(), out_y.sin(), out_y.cos()], dim=1).float()


class ViT(nn.Module):
    """`[B, C, S, S]` -> `[B, width]` features (module docstring)."""

    def __init__(self, model, in_channels: int, image_size: int):
        super().__init__()
        width, depth, num_heads = VIT_SIZES.get(model.name, (model.width, model.depth,
                                                             model.num_heads))
        grid = image_size // model.patch_size
        self.patch_embed = nn.Conv2d(in_channels, width, model.patch_size, model.patch_size)
        if model.posemb == "learn":
            self.pos_embed = nn.Parameter(torch.randn(1, grid * grid, width) * 0.02)
        else:
            self.register_buffer("pos_embed", sincos_2d(grid, grid, width)[None])
        self.cls = nn.Parameter(torch.zeros(1, 1, width)) if model.pool == "cls" else None
        self.blocks = nn.Sequential(*(TransformerBlock(width, num_heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.feature_dim = width

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm(self.blocks(x))
        return x[:, 0] if self.cls is not None else x.mean(dim=1)


def _linear(in_dim: int, out_dim: int, bias: bool) -> nn.Linear:
    linear = nn.Linear(in_dim, out_dim, bias=bias)
    std = in_dim**-0.5 / 0.87962566103423978  # Variance 1 / fan_in after truncation.
    nn.init.trunc_normal_(linear.weight, std=std, a=-2 * std, b=2 * std)
    if bias:
        nn.init.zeros_(linear.bias)
    return linear


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int,
             last_bn: bool) -> nn.Sequential:
    """(Linear -> BN -> ReLU) x (num_layers - 1) -> Linear [-> BN without affine]."""
    layers, dim = [], in_dim
    for _ in range(num_layers - 1):
        layers += [_linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU()]
        dim = hidden_dim
    layers.append(_linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent of `[N, D]` embeddings of two views (module docstring)."""
    n = z1.shape[0]
    u = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = (u @ u.T / temperature).fill_diagonal_(float("-inf"))
    positives = torch.arange(2 * n, device=u.device).roll(n)  # Row k pairs with k + N mod 2N.
    return F.cross_entropy(logits, positives)


def byol_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """l(p1, z'2) + l(p2, z'1) for rows stacking view 1 then view 2 (module docstring)."""
    p1, p2 = F.normalize(predictions.float(), dim=1).chunk(2)
    t1, t2 = F.normalize(targets.float(), dim=1).chunk(2)
    return (2 - 2 * (p1 * t2).sum(1)).mean() + (2 - 2 * (p2 * t1).sum(1)).mean()


class LARS(torch.optim.Optimizer):
    """LARS with momentum as optax.lars under ssl_jax's masks (module docstring)."""

    def __init__(self, params, lr: float, momentum: float, weight_decay: float,
                 trust_coefficient: float):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient))

    @torch.no_grad()
    def step(self):
        """One update of every parameter with a gradient (multi-tensor `_foreach` ops)."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            masked = [p for p in params if p.ndim > 1]
            updates = list(torch._foreach_add([p.grad for p in masked], masked,
                                              alpha=group["weight_decay"]))
            p_norms = torch.stack(torch._foreach_norm(masked))
            u_norms = torch.stack(torch._foreach_norm(updates))
            ratios = torch.where((p_norms > 0) & (u_norms > 0),
                                 group["trust_coefficient"] * p_norms / u_norms, 1.0)
            torch._foreach_mul_(updates, list(ratios.unbind()))
            params = masked + [p for p in params if p.ndim <= 1]
            updates += [p.grad for p in params[len(masked):]]
            momenta = [self.state[p].setdefault("momentum", torch.zeros_like(p)) for p in params]
            torch._foreach_mul_(momenta, group["momentum"])
            torch._foreach_add_(momenta, updates, alpha=-group["lr"])
            torch._foreach_add_(params, momenta)


def lars(params, optim, learning_rate: float) -> LARS:
    """LARS of `config.optim`; ValueError for what this reference does not implement."""
    if optim.name != "lars" or optim.grad_clip_norm > 0 or optim.frozen or optim.constant_lr:
        raise ValueError(f"config.optim: the PyTorch reference implements plain LARS only, got "
                         f"name={optim.name!r}, grad_clip_norm={optim.grad_clip_norm}, "
                         f"frozen={optim.frozen}, constant_lr={optim.constant_lr}")
    return LARS(params, learning_rate, optim.momentum, optim.weight_decay,
                optim.trust_coefficient)


class ReferenceStep:
    """The SimCLR or BYOL train step of `config` on `device` (module docstring)."""

    def __init__(self, config, learning_rate: float, device: torch.device,
                 channels_last: bool, compile_loss: bool):
        m, model = config.method, config.model
        vit = model.name == "vit" or model.name in VIT_SIZES
        if (m.name not in ("simclr", "byol") or not (vit or model.name in ARCHITECTURES)
                or model.stem not in ("cifar", "imagenet")):
            raise ValueError(f"config: the PyTorch reference is SimCLR / BYOL on "
                             f"{' / '.join([*ARCHITECTURES, 'vit', *VIT_SIZES])} (ResNets with "
                             f"the cifar or imagenet stem), got method {m.name!r}, model "
                             f"{model.name!r} stem {model.stem!r}")
        self.method, self.device = m.name, device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.bfloat16 = model.dtype == "bfloat16"
        self.temperature = m.temperature if m.name == "simclr" else None
        channels = len(config.input.mean)
        backbone = (ViT(model, channels, m.view.get("out_size", config.input.image_size))
                    if vit else ResNet(model.name, model.stem, channels, model.width,
                                       model.zero_init_residual))
        projector = mlp_head(backbone.feature_dim, m.projector.hidden_dim, m.projector.out_dim,
                             m.projector.num_layers, m.projector.last_bn)
        self.encoder = nn.Sequential(backbone, projector)
        online = [self.encoder]
        if self.method == "byol":
            self.predictor = mlp_head(m.projector.out_dim, m.predictor.hidden_dim,
                                      m.projector.out_dim, m.predictor.num_layers,
                                      m.predictor.last_bn)
            self.target = copy.deepcopy(self.encoder).requires_grad_(False)
            self.ema_decay = m.ema.base
            online.append(self.predictor)
            self.target.to(device, memory_format=self.memory_format).train()
            self.target_params = list(self.target.parameters())
            self.online_target_params = list(self.encoder.parameters())
        for module in online:
            module.to(device, memory_format=self.memory_format).train()
        self.params = [p for module in online for p in module.parameters()]
        self.optimizer = lars(self.params, config.optim, learning_rate)
        self.loss = torch.compile(self._loss) if compile_loss else self._loss

    def parameter_count(self) -> int:
        """Trained parameters: backbone + projector (+ predictor)."""
        return sum(p.numel() for p in self.params)

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bfloat16):
            z = self.encoder(x)
            if self.method == "byol":
                p = self.predictor(z)
                with torch.no_grad():
                    target = self.target(x)
        if self.method == "simclr":
            return nt_xent(*z.chunk(2), self.temperature)
        return byol_loss(p, target)

    def step(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """One optimizer step (and EMA update for BYOL) on two views; the detached loss."""
        x = torch.cat([view1, view2]).contiguous(memory_format=self.memory_format)
        loss = self.loss(x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.method == "byol":
            with torch.no_grad():
                torch._foreach_lerp_(self.target_params, self.online_target_params,
                                     1.0 - self.ema_decay)
        return loss.detach()
