"""Conformer encoder (Gulati et al. 2020) on filterbanks, with x4 convolutional subsampling.

Attention uses rotary position embeddings and `F.scaled_dot_product_attention` (fused kernels
where the device has them) with a key-padding mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bljust.config import ModelConfig


def subsampled_lengths(lens: torch.Tensor) -> torch.Tensor:
    """Frame counts after two stride-2 convolutions with padding 1: ceil(ceil(T/2)/2) = ceil(T/4)."""
    return (lens + 3) // 4


def padding_mask(lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) bool, True on real frames."""
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]


class _UniformMaskDropout(torch.autograd.Function):
    """Dropout whose keep-mask comes from torch.rand (vectorised) and is saved as bool."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = torch.rand_like(x) >= p
        ctx.scale = 1.0 / (1.0 - p)
        ctx.save_for_backward(keep)
        return x * keep * ctx.scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad * keep * ctx.scale, None


class Dropout(nn.Dropout):
    """nn.Dropout, cheaper on the CPU: there ATen draws its mask with a scalar bernoulli_ loop,
    which took ~1/6 of the tiny model's training step (docs/benchmarks.md); a uniform draw and a
    comparison is the same distribution at a fraction of the cost, and the bool mask it keeps for
    backward is 4x smaller. On other devices ATen's fused kernel is used."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        return _UniformMaskDropout.apply(x, self.p)


class ConvSubsampling(nn.Module):
    """(B, T, F) 10 ms frames, (B,) lengths -> (B, ceil(T/4), d_model) 40 ms frames, (B,) lengths."""

    def __init__(self, input_dim: int, channels: int, d_model: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.SiLU(),
        )
        self.out = nn.Linear(channels * ((input_dim + 3) // 4), d_model)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x.unsqueeze(1))  # (B, C, T/4, F/4)
        b, c, t, f = x.shape
        return self.out(x.permute(0, 2, 1, 3).reshape(b, t, c * f)), subsampled_lengths(lens)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021) applied to queries and keys."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", base ** (-torch.arange(0, head_dim, 2).float() / head_dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, T, Dh) -> same, rotated by position."""
        t = torch.arange(x.shape[-2], device=x.device, dtype=torch.float32)
        angles = torch.outer(t, self.inv_freq)  # (T, Dh/2)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class FeedForward(nn.Module):
    def __init__(self, d: int, mult: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d), nn.Linear(d, d * mult), nn.SiLU(), Dropout(dropout),
            nn.Linear(d * mult, d), Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.rope = RotaryEmbedding(d // heads)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D); mask: (B, T) True on real frames."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = self.rope(q), self.rope(k)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )
        return self.drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, norm, SiLU, pointwise conv.

    LayerNorm rather than BatchNorm: batch statistics would mix padding into real frames and
    need syncing across DDP ranks.
    """

    def __init__(self, d: int, kernel: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.pw1 = nn.Linear(d, 2 * d)
        self.dw = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.dw_norm = nn.LayerNorm(d)
        self.pw2 = nn.Linear(d, d)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pw1(self.norm(x)), dim=-1)
        y = y.masked_fill(~mask[..., None], 0.0)  # padding must not leak into real frames
        y = self.dw(y.transpose(1, 2)).transpose(1, 2)
        y = F.silu(self.dw_norm(y))
        return self.drop(self.pw2(y))


class ConformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.ff1 = FeedForward(d, cfg.ff_mult, cfg.dropout)
        self.attn = SelfAttention(d, cfg.num_heads, cfg.dropout)
        self.conv = ConvModule(d, cfg.conv_kernel, cfg.dropout)
        self.ff2 = FeedForward(d, cfg.ff_mult, cfg.dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, mask)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


class ConformerEncoder(nn.Module):
    """Filterbank frames in, 40 ms encoder frames out.

    `frontend` replaces the conv subsampling with any module mapping (inputs, lengths) to
    ((B, T', d_model), (B,)) (models/frontends.py: a waveform CNN, for the front-end benchmark).
    """

    def __init__(self, cfg: ModelConfig, frontend: nn.Module | None = None):
        super().__init__()
        self.subsample = frontend if frontend is not None else \
            ConvSubsampling(cfg.input_dim, cfg.subsampling_channels, cfg.d_model)
        self.drop = Dropout(cfg.dropout)
        self.layers = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.num_layers))
        self.d_model = cfg.d_model

    def forward(self, feats: torch.Tensor, lens: torch.Tensor, return_layer: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """feats: (B, T, F), lens: (B,) -> ((B, T', D), (B,)) with T' = ceil(T/4).

        `return_layer` k returns the output of block k (1-based) instead of the last one; the
        monitors probe intermediate layers this way.
        """
        x, out_lens = self.subsample(feats, lens)
        x = self.drop(x)
        mask = padding_mask(out_lens, x.shape[1])
        for i, layer in enumerate(self.layers, 1):
            x = layer(x, mask)
            if i == return_layer:
                break
        return x, out_lens

    def set_dropout(self, p: float) -> None:
        """Change every dropout rate (pseudo-labelling raises it when labelling starts)."""
        for m in self.modules():
            if isinstance(m, nn.Dropout):
                m.p = p
            if isinstance(m, SelfAttention):
                m.dropout = p
