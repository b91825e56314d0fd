"""The two feed-forward blocks: GELU MLP with any expansion ratio, and SwiGLU (Shazeer, 2020).

GELU MLP: down(gelu(up(x))), hidden = ratio * n_embd: 2 * n_embd * hidden weights.
SwiGLU:   down(silu(gate(x)) * up(x)): 3 * n_embd * hidden weights, so hidden = 8/3 * n_embd
          matches the GELU 4x parameter count (LLaMA's choice).
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from tutorial_lib.config import GPTConfig
from tutorial_lib.scopes import scope


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.down_proj = nn.Linear(config.mlp_hidden, config.n_embd, bias=config.bias)
        self.approximate = config.gelu_approx
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        with scope("mlp.up"):
            h = self.up_proj(x)  # (B, T, hidden)
        with scope("mlp.act"):
            h = F.gelu(h, approximate=self.approximate)
        with scope("mlp.down"):
            return self.dropout(self.down_proj(h))  # (B, T, C)


class SwiGLU(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.up_proj = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.down_proj = nn.Linear(config.mlp_hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        with scope("mlp.up"):
            g, u = self.gate_proj(x), self.up_proj(x)  # (B, T, hidden) each
        with scope("mlp.act"):
            h = F.silu(g) * u
        with scope("mlp.down"):
            return self.dropout(self.down_proj(h))


def build_mlp(config: GPTConfig) -> nn.Module:
    return SwiGLU(config) if config.mlp == "swiglu" else MLP(config)
