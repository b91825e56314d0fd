"""GPT: the configurable GPT-2 every lesson measures.

After nanoGPT's model.py (Karpathy) and the GPT-2 paper (Radford et al., 2019): token embedding
(+ learned positions, or RoPE inside attention), n_layer pre-norm blocks, final norm, LM head.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from tutorial_lib.attention import CausalSelfAttention, KVCache, rope_cache
from tutorial_lib.config import GPTConfig
from tutorial_lib.mlp import build_mlp
from tutorial_lib.scopes import scope


def build_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "layernorm":
        return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
    return nn.RMSNorm(config.n_embd, eps=config.norm_eps)


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.norm1 = build_norm(config)
        self.attn = CausalSelfAttention(config)
        self.norm2 = build_norm(config)
        self.mlp = build_mlp(config)

    def forward(self, x, rope=None, kv_cache=None, layer: int = 0):
        with scope("norm"):
            h = self.norm1(x)
        x = x + self.attn(h, rope, kv_cache, layer)
        with scope("norm"):
            h = self.norm2(x)
        return x + self.mlp(h)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        V = config.padded_vocab_size
        self.wte = nn.Embedding(V, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.pos == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm_f = build_norm(config)
        self.lm_head = nn.Linear(config.n_embd, V, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        if config.pos == "rope":
            cos, sin = rope_cache(config.block_size, config.head_dim, config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer)
        for name, p in self.named_parameters():
            if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters (shared tensors counted once); non_embedding drops wte/wpe, as GPT-2 reports."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel()
            if self.wpe is not None:
                n -= self.wpe.weight.numel()
        return n

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None,
                kv_cache: Optional[KVCache] = None):
        """idx (B, T) token ids -> (logits (B, T, vocab), loss or None)."""
        B, T = idx.shape
        start = 0 if kv_cache is None else kv_cache.length
        if start + T > self.config.block_size:
            raise ValueError(f"sequence length {start + T} exceeds block_size="
                             f"{self.config.block_size} of this GPTConfig")
        with scope("embedding"):
            x = self.wte(idx)  # (B, T, C)
            if self.wpe is not None:
                x = x + self.wpe(torch.arange(start, start + T, device=idx.device))
            x = self.drop(x)
        rope = (self.rope_cos, self.rope_sin) if self.config.pos == "rope" else None
        for i, block in enumerate(self.blocks):
            x = block(x, rope, kv_cache, i)
        if kv_cache is not None:
            kv_cache.advance()
        with scope("norm"):
            x = self.norm_f(x)
        with scope("lm_head"):
            logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            with scope("loss"):
                # at least float32 (bf16 logits are upcast; float64 ones are not cut down)
                ce_dtype = torch.promote_types(logits.dtype, torch.float32)
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)).to(ce_dtype), targets.view(-1),
                                       ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
                 top_k: Optional[int] = None, use_cache: bool = True, generator=None):
        """Continue idx (B, T) by max_new_tokens. temperature 0 = greedy.

        With ``use_cache`` the prompt is run once and each new token costs one position, reading
        keys/values from a KVCache sized by n_kv_head; without it every step recomputes the whole
        prefix (the reference the cache is tested against).
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")
        total = idx.shape[1] + max_new_tokens
        if total > self.config.block_size:
            raise ValueError(f"prompt + max_new_tokens = {total} exceeds block_size="
                             f"{self.config.block_size}")
        cache = None
        if use_cache:
            p = next(self.parameters())
            cache = KVCache(self.config, idx.shape[0], total, p.device, p.dtype)
        x = idx
        for _ in range(max_new_tokens):
            logits, _ = self(x if cache is None else x[:, cache.length:], kv_cache=cache)
            logits = logits[:, -1, : self.config.vocab_size]
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = float("-inf")
                nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
            x = torch.cat([x, nxt], dim=1)
        return x
