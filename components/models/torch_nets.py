"""Network builders (torch imported at module level: import only when torch is needed)."""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class NLinear(nn.Module):
    """One linear map per feature: [b, n, d_in] → [b, n, d_out]."""

    def __init__(self, n: int, d_in: int, d_out: int):
        super().__init__()
        bound = d_in ** -0.5
        self.weight = nn.Parameter(torch.empty(n, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, d_out).uniform_(-bound, bound))

    def forward(self, x):
        return torch.einsum("bni,nio->bno", x, self.weight) + self.bias


class PeriodicEmbeddings(nn.Module):
    """Numeric features → [b, n, d] vectors, PLR of Gorishniy et al. 2022 ("On Embeddings for Numerical
    Features in Tabular Deep Learning"): cos and sin of 2π·c·x for ``n_frequencies`` trained frequencies
    c ~ N(0, ``frequency_scale``²) per feature, then a per-feature linear map and ReLU."""

    def __init__(self, n: int, d: int, n_frequencies: int, frequency_scale: float):
        super().__init__()
        self.frequencies = nn.Parameter(torch.empty(n, n_frequencies))
        nn.init.trunc_normal_(self.frequencies, 0.0, frequency_scale, -3 * frequency_scale, 3 * frequency_scale)
        self.linear = NLinear(n, 2 * n_frequencies, d)

    def forward(self, x):
        v = 2 * torch.pi * self.frequencies * x[..., None]
        return torch.relu(self.linear(torch.cat([torch.cos(v), torch.sin(v)], dim=-1)))


def build_mlp(n_in: int, n_out: int, hidden_sizes, dropout: float, batch_norm: bool, activation: str,
              num_embeddings: str = "none", d_embedding: int = 24, n_frequencies: int = 48,
              frequency_scale: float = 0.01) -> nn.Sequential:
    """With ``num_embeddings="periodic"`` every input column gets its own periodic embedding (MLP-PLR)
    and the MLP reads them side by side."""
    layers: list[nn.Module] = []
    width = n_in
    if num_embeddings == "periodic":
        layers += [PeriodicEmbeddings(n_in, d_embedding, n_frequencies, frequency_scale), nn.Flatten()]
        width = n_in * d_embedding
    for size in hidden_sizes:
        layers.append(nn.Linear(width, size))
        if batch_norm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(ACTIVATIONS[activation]())
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class FeatureTokenizer(nn.Module):
    """Numeric features become tokens through their own affine map, or with ``periodic`` set
    (``(n_frequencies, frequency_scale)``) through periodic embeddings; categorical ones through an embedding."""

    def __init__(self, n_num: int, cat_cardinalities: list[int], d: int, periodic: tuple[int, float] | None = None):
        super().__init__()
        self.n_num = n_num
        bound = d ** -0.5
        if periodic:
            self.num_embed = PeriodicEmbeddings(n_num, d, *periodic)
        else:
            self.num_embed = None
            self.num_weight = nn.Parameter(torch.empty(n_num, d))
            self.num_bias = nn.Parameter(torch.empty(n_num, d))
            nn.init.uniform_(self.num_weight, -bound, bound)
            nn.init.uniform_(self.num_bias, -bound, bound)
        if cat_cardinalities:
            # index 0 of each feature's range is "unknown category" (ordinal encoder's -1, shifted)
            offsets = torch.tensor([0, *cat_cardinalities[:-1]]).cumsum(0)
            self.register_buffer("cat_offsets", offsets, persistent=False)
            self.cat_embed = nn.Embedding(sum(cat_cardinalities), d)
            nn.init.uniform_(self.cat_embed.weight, -bound, bound)
        else:
            self.cat_embed = None

    def forward(self, x):
        num = x[:, : self.n_num]
        tokens = self.num_embed(num) if self.num_embed is not None else num[..., None] * self.num_weight + self.num_bias
        if self.cat_embed is not None:
            codes = x[:, self.n_num:].long() + self.cat_offsets
            tokens = torch.cat([tokens, self.cat_embed(codes)], dim=1)
        return tokens


class ReGLU(nn.Module):
    def forward(self, x):
        a, b = x.chunk(2, dim=-1)
        return a * torch.relu(b)


class FTBlock(nn.Module):
    """Pre-norm Transformer block as in the paper: ReGLU feed-forward; ``residual_dropout`` drops units of each
    branch's output before it is added back (the paper's default: none)."""

    def __init__(self, d: int, n_heads: int, attention_dropout: float, ffn_dropout: float, ffn_factor: float,
                 first: bool, residual_dropout: float = 0.0):
        super().__init__()
        self.residual_dropout = nn.Dropout(residual_dropout) if residual_dropout else nn.Identity()
        hidden = int(d * ffn_factor)
        self.attn_norm = nn.Identity() if first else nn.LayerNorm(d)  # tokens are fresh in the first block
        self.attn = nn.MultiheadAttention(d, n_heads, dropout=attention_dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 2 * hidden), ReGLU(), nn.Dropout(ffn_dropout), nn.Linear(hidden, d))

    def forward(self, x):
        h = self.attn_norm(x)
        x = x + self.residual_dropout(self.attn(h, h, h, need_weights=False)[0])
        return x + self.residual_dropout(self.ffn(self.ffn_norm(x)))


class FTTransformer(nn.Module):
    def __init__(self, n_num: int, cat_cardinalities: list[int], n_out: int, d_token: int, n_blocks: int,
                 n_heads: int, attention_dropout: float, ffn_dropout: float, ffn_factor: float,
                 num_embeddings: str = "none", n_frequencies: int = 48, frequency_scale: float = 0.01,
                 residual_dropout: float = 0.0):
        super().__init__()
        periodic = (n_frequencies, frequency_scale) if num_embeddings == "periodic" else None
        self.tokenizer = FeatureTokenizer(n_num, cat_cardinalities, d_token, periodic)
        self.cls = nn.Parameter(torch.empty(1, 1, d_token))
        nn.init.uniform_(self.cls, -d_token ** -0.5, d_token ** -0.5)
        self.blocks = nn.Sequential(*[FTBlock(d_token, n_heads, attention_dropout, ffn_dropout, ffn_factor, i == 0,
                                              residual_dropout) for i in range(n_blocks)])
        self.head = nn.Sequential(nn.LayerNorm(d_token), nn.ReLU(), nn.Linear(d_token, n_out))

    def forward(self, x):
        tokens = torch.cat([self.tokenizer(x), self.cls.expand(len(x), -1, -1)], dim=1)
        return self.head(self.blocks(tokens)[:, -1])


class LSTMNet(nn.Module):
    def __init__(self, n_channels: int, n_out: int, hidden_size: int, num_layers: int, dropout: float,
                 bidirectional: bool):
        super().__init__()
        self.lstm = nn.LSTM(n_channels, hidden_size, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), n_out)

    def forward(self, x):  # x: [n, C, L]
        out, _ = self.lstm(x.transpose(1, 2))
        return self.head(out[:, -1])


class CNN1dNet(nn.Module):
    def __init__(self, n_channels: int, n_out: int, channels: list[int], kernel_size: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_channels
        for size in channels:
            layers += [nn.Conv1d(width, size, kernel_size, padding=kernel_size // 2), nn.BatchNorm1d(size), nn.ReLU()]
            width = size
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width, n_out))

    def forward(self, x):  # x: [n, C, L]
        h = self.features(x)
        return self.head(torch.cat([h.mean(dim=-1), h[..., -1]], dim=1))  # the whole window and its latest step
