"""GPT: the configurable GPT-2 every lesson measures, in one file that reads top to bottom.

After nanoGPT's model.py (Karpathy) and the GPT-2 paper (Radford et al., 2019); the names follow
HF transformers' Llama (``q/k/v/o_proj``, ``gate/up/down_proj``, ``repeat_kv``). References for
the lessons' changes: Shazeer 2019 (MQA), Ainslie et al. 2023 (GQA), Su et al. 2021 (RoPE),
Dao et al. 2022 (FlashAttention), Shazeer 2020 (SwiGLU), Beltagy et al. 2020 (sliding windows),
Hsu et al. 2024 (Liger Kernel) and Wijmans et al. 2024 (Cut Cross-Entropy) for the chunked loss.

Every lesson is a change of one or two ``GPTConfig`` fields (``n_kv_head`` for GQA,
``attn_backend`` for flash attention, ``mlp_ratio`` / ``mlp`` for the MLP lessons, ``window`` for
sliding windows, ``loss_impl`` / ``loss_chunk`` for the LM-head lesson, ``pad_vocab_multiple`` /
``mask_vocab_padding`` for the speed ladder's vocabulary rung, ``checkpoint`` / ``checkpoint_every``
for the memory-budget lesson), so that "before" and "after" are the same code with a different
config. How a step *runs* -- autocast dtype, TF32, torch.compile, AdamW's kernels -- is not the
model's: ``tutorial_lib.runtime.StepSettings`` holds it.

Activation checkpointing (Chen et al. 2016, "Training deep nets with sublinear memory cost"):
``GPTConfig(checkpoint="block")`` runs each chosen block under ``torch.utils.checkpoint``
(``recompute``), which keeps only the block's input and runs its forward again in backward;
"attention" or "mlp" recompute only that half of the block (its norm included).

Profiling names: ``GPT.module_scopes()`` names the modules the profiler and the memory kit label
(``tutorial_lib.scopes``); the forward keeps explicit ``scope(...)`` only where no module exists
(``attention.rope``, ``attention.core``, ``mlp.act``, ``loss``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tutorial_lib import attention
from tutorial_lib.loss import IGNORE_INDEX, LOSS_IMPLS, chunked_linear_cross_entropy
from tutorial_lib.scopes import saving_as, scope

MLP_KINDS = ("gelu", "swiglu")
NORM_KINDS = ("layernorm", "rmsnorm")
POS_KINDS = ("learned", "rope")
GELU_APPROX = ("none", "tanh")
# what a checkpointed block recomputes in backward: nothing, all of it, or one half (with its norm)
CHECKPOINT_POLICIES = ("none", "block", "attention", "mlp")
SWIGLU_PARAM_MATCHED_RATIO = 8.0 / 3.0  # 3 matrices of 8/3 x n_embd = 2 matrices of 4 x n_embd


# ---- config ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GPTConfig:
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # query heads
    n_kv_head: Optional[int] = None  # key/value heads: None = n_head (MHA); 1 = MQA; else GQA
    n_embd: int = 768  # residual stream width
    block_size: int = 1024  # longest sequence the model accepts (learned positions: table size)
    vocab_size: int = 50257  # GPT-2 BPE vocabulary
    pad_vocab_multiple: Optional[int] = None  # e.g. 64 -> 50,304 rows in wte/lm_head (nanoGPT)
    mask_vocab_padding: bool = False  # padded logits -> -inf before the loss (exact); False: they enter it (nanoGPT)
    mlp: str = "gelu"  # "gelu" (Linear-GELU-Linear) or "swiglu" (gate/up/down)
    mlp_ratio: Optional[float] = None  # hidden = ratio * n_embd; None: 4 for gelu, 8/3 for swiglu
    gelu_approx: str = "none"  # "tanh" for the original GPT-2's approximate GELU
    norm: str = "rmsnorm"  # "rmsnorm" or "layernorm"
    norm_eps: float = 1e-5  # epsilon of the norms
    pos: str = "rope"  # "rope" (rotary, no parameters) or "learned" (GPT-2's wpe table)
    rope_theta: float = 10000.0  # rotary base frequency
    attn_backend: str = "sdpa"  # a name in the attention registry (tutorial_lib.attention)
    window: Optional[int] = None  # sliding window: a query sees itself and window-1 keys before it
    tile_size: int = 64  # tile edge of the "tiled" backend
    bias: bool = False  # biases in Linear layers and LayerNorm
    dropout: float = 0.0  # dropout on attention probabilities and residual branches
    tie_embeddings: bool = True  # lm_head shares its weight with the token embedding
    loss_impl: str = "full"  # "full" logits, or "chunked" / "chunked_liger" (tutorial_lib.loss)
    loss_chunk: int = 1024  # tokens per chunk of the chunked loss
    checkpoint: str = "none"  # activation checkpointing: "block", "attention" or "mlp" recomputed in backward
    checkpoint_every: int = 1  # ... in blocks 0, k, 2k, ... (1: every block)
    name: str = field(default="custom", compare=False)  # a label for tables and plots

    def __post_init__(self) -> None:
        for f in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "tile_size", "loss_chunk",
                  "checkpoint_every"):
            _check_int(f, getattr(self, f))
        for f in ("n_kv_head", "window", "pad_vocab_multiple"):
            if getattr(self, f) is not None:
                _check_int(f, getattr(self, f), " or None")
        for f in ("bias", "tie_embeddings", "mask_vocab_padding"):
            if not isinstance(getattr(self, f), bool):
                raise ValueError(f"GPTConfig.{f}={getattr(self, f)!r} must be True or False")
        _choice("mlp", self.mlp, MLP_KINDS)
        _choice("norm", self.norm, NORM_KINDS)
        _choice("pos", self.pos, POS_KINDS)
        _choice("gelu_approx", self.gelu_approx, GELU_APPROX)
        _choice("attn_backend", self.attn_backend, attention.names())
        _choice("loss_impl", self.loss_impl, LOSS_IMPLS)
        _choice("checkpoint", self.checkpoint, CHECKPOINT_POLICIES)
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.n_head % self.kv_heads:
            raise ValueError(f"GPTConfig.n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}")
        if self.mlp_ratio is not None:
            _check_float("mlp_ratio", self.mlp_ratio, "must be a finite number > 0", lambda v: v > 0)
        _check_float("rope_theta", self.rope_theta, "must be a finite number > 0", lambda v: v > 0)
        _check_float("norm_eps", self.norm_eps, "must be a finite number >= 0", lambda v: v >= 0)
        _check_float("dropout", self.dropout, "must be in [0, 1)", lambda v: 0 <= v < 1)
        if attention.get(self.attn_backend).needs_window and self.window is None:
            raise ValueError(f"GPTConfig.attn_backend={self.attn_backend!r} needs a window (got window=None)")
        if self.pos == "rope" and self.head_dim % 2:
            raise ValueError(f"GPTConfig: RoPE needs an even head_dim, got {self.head_dim}")
        if self.mlp_hidden < 1:
            raise ValueError(f"GPTConfig.mlp_ratio={self.mlp_ratio!r} gives an MLP of {self.mlp_hidden} units")

    # ---- derived sizes ---------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_rep(self) -> int:
        """How many query heads share one key/value head."""
        return self.n_head // self.kv_heads

    @property
    def ratio(self) -> float:
        if self.mlp_ratio is not None:
            return float(self.mlp_ratio)
        return 4.0 if self.mlp == "gelu" else SWIGLU_PARAM_MATCHED_RATIO

    @property
    def mlp_hidden(self) -> int:
        return int(round(self.ratio * self.n_embd))

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_multiple
        return self.vocab_size if not m else -(-self.vocab_size // m) * m

    def checkpointed(self, layer: int) -> str:
        """What block ``layer`` recomputes in backward: ``checkpoint`` in blocks 0, k, 2k, ...
        (k = ``checkpoint_every``), "none" in the others."""
        return self.checkpoint if layer % self.checkpoint_every == 0 else "none"

    def replace(self, **changes) -> "GPTConfig":
        """A validated copy with some fields changed (``cfg.replace(n_kv_head=4)``)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"GPTConfig has no field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        attn = "MHA" if self.kv_heads == self.n_head else ("MQA" if self.kv_heads == 1 else f"GQA-{self.kv_heads}")
        win = f", window {self.window}" if self.window else ""
        loss = "" if self.loss_impl == "full" else f", {self.loss_impl} loss ({self.loss_chunk})"
        vocab = ""
        if self.padded_vocab_size != self.vocab_size:
            vocab = f", vocab {self.padded_vocab_size:,}" + (" (masked)" if self.mask_vocab_padding else "")
        ckpt = "" if self.checkpoint == "none" else f", checkpoint {self.checkpoint}" + (
            f" every {self.checkpoint_every}" if self.checkpoint_every > 1 else "")
        return (f"{self.name}: {self.n_layer}L {self.n_head}H d{self.n_embd} {attn}, "
                f"{self.mlp} x{self.ratio:.3g}, {self.norm}, {self.pos}, {self.attn_backend}{win}{loss}{vocab}{ckpt}")


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"GPTConfig.{name}={value!r} is not one of {list(allowed)}")


def _check_int(name: str, value, extra: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"GPTConfig.{name}={value!r} must be a positive integer{extra}")


def _check_float(name: str, value, must: str, ok) -> None:
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or not ok(value)):
        raise ValueError(f"GPTConfig.{name}={value!r} {must}")


PRESETS = {
    # The seed's baseline: GPT-2 small dimensions with RoPE, RMSNorm, GELU 4x, MHA, no biases.
    "gpt2_small": GPTConfig(name="gpt2_small"),
    # The original GPT-2 small (124,439,808 parameters): learned positions, LayerNorm with bias,
    # tanh-GELU, tied embeddings.
    "gpt2_classic": GPTConfig(name="gpt2_classic", pos="learned", norm="layernorm", bias=True,
                              gelu_approx="tanh"),
    # A GPT-2-shaped model small enough for CPU lessons (12 heads so GQA 12/4/2/1 all fit).
    "gpt2_mini": GPTConfig(name="gpt2_mini", n_layer=4, n_head=12, n_embd=384, block_size=1024),
    # For CI and tests: seconds on 2 cores.
    "tiny": GPTConfig(name="tiny", n_layer=2, n_head=4, n_embd=64, block_size=256),
}


def get_config(name: str, **changes) -> GPTConfig:
    """A preset by name, with optional field changes (validated)."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is not one of {sorted(PRESETS)}")
    cfg = PRESETS[name]
    return cfg.replace(**changes) if changes else cfg


# ---- norms and rotary positions --------------------------------------------------------------
def build_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "layernorm":
        return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
    return nn.RMSNorm(config.n_embd, eps=config.norm_eps)


def rope_cache(seq_len: int, head_dim: int, theta: float = 10000.0, device=None):
    """cos, sin tables of shape (seq_len, head_dim/2) for rotary position embeddings."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    t = torch.arange(seq_len, device=device, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    return freqs.cos(), freqs.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., :D/2], x[..., D/2:]) of (B, H, T, D) by position-dependent angles."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


# ---- attention -------------------------------------------------------------------------------
class CausalSelfAttention(nn.Module):
    """q/k/v/o projections with ``n_kv_head`` key/value heads, RoPE, and a registered backend."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        C, D = config.n_embd, config.head_dim
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads, D
        self.q_proj = nn.Linear(C, config.n_head * D, bias=config.bias)
        self.k_proj = nn.Linear(C, config.kv_heads * D, bias=config.bias)
        self.v_proj = nn.Linear(C, config.kv_heads * D, bias=config.bias)
        self.o_proj = nn.Linear(config.n_head * D, C, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.backend = attention.get(config.attn_backend)

    def forward(self, x, rope=None, kv_cache=None, layer: int = 0):
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        offset = 0 if kv_cache is None else kv_cache.length
        if rope is not None:
            with scope("attention.rope"):
                cos, sin = rope[0][offset:offset + T], rope[1][offset:offset + T]
                q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        cfg = self.config
        with scope("attention.core"):
            if kv_cache is None:
                y = self.backend(q, k, v, cfg.window, tile=cfg.tile_size, dropout_p=cfg.dropout,
                                 training=self.training)
            else:  # decoding: the new queries sit at positions offset..offset+T-1 of the cache
                k, v = kv_cache.update(layer, k, v)
                y = attention.decode_attention(q, k, v, cfg.attn_backend, cfg.window, offset)
            y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_dim)  # (B, T, H*D)
        return self.resid_dropout(self.o_proj(y))


class KVCache:
    """Pre-allocated keys and values for every layer: (n_layer, B, n_kv_head, max_len, head_dim) each.

    Its size follows ``n_kv_head``: that is where GQA/MQA pay at inference time.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device=None, dtype=None):
        shape = (config.n_layer, batch_size, config.kv_heads, max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.length = 0  # tokens stored so far (the same for every layer)
        self.pending = 0  # tokens written by the current forward, added to length by advance()

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        T = k.shape[2]
        end = self.length + T
        if end > self.max_len:
            raise ValueError(f"KVCache: {end} tokens exceed max_len={self.max_len}")
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        self.pending = T
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self):
        """Called once per forward, after every layer has stored its new keys and values."""
        self.length += self.pending
        self.pending = 0

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2


# ---- feed-forward ----------------------------------------------------------------------------
class MLP(nn.Module):
    """down(gelu(up(x))), hidden = ratio * n_embd: 2 * n_embd * hidden weights."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.down_proj = nn.Linear(config.mlp_hidden, config.n_embd, bias=config.bias)
        self.approximate = config.gelu_approx
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        h = self.up_proj(x)  # (B, T, hidden)
        with scope("mlp.act"):
            h = F.gelu(h, approximate=self.approximate)
        return self.dropout(self.down_proj(h))  # (B, T, C)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)): 3 * n_embd * hidden weights, so hidden = 8/3 * n_embd matches
    the GELU 4x parameter count (LLaMA's choice)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.up_proj = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.down_proj = nn.Linear(config.mlp_hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        g, u = self.gate_proj(x), self.up_proj(x)  # (B, T, hidden) each
        with scope("mlp.act"):
            h = F.silu(g) * u
        return self.dropout(self.down_proj(h))


def build_mlp(config: GPTConfig) -> nn.Module:
    return SwiGLU(config) if config.mlp == "swiglu" else MLP(config)


# ---- the model -------------------------------------------------------------------------------
def recompute(fn, *args):
    """``fn(*args)``, its activations recomputed in backward instead of kept (activation
    checkpointing): ``torch.utils.checkpoint`` (non-reentrant) keeps only the tensor inputs -- here
    the residual stream, which the memory kit counts as such -- and runs ``fn`` again in backward
    (only as far as the tensors backward needs)."""
    with saving_as("residual"):
        return checkpoint(fn, *args, use_reentrant=False)


class Block(nn.Module):
    def __init__(self, config: GPTConfig, recomputes: str = "none"):
        super().__init__()
        self.norm1 = build_norm(config)
        self.attn = CausalSelfAttention(config)
        self.norm2 = build_norm(config)
        self.mlp = build_mlp(config)
        self.recomputes = recomputes  # "none", "block", "attention" or "mlp": GPTConfig.checkpointed(layer)

    def forward(self, x, rope=None, kv_cache=None, layer: int = 0):
        part = self.recomputes if torch.is_grad_enabled() and kv_cache is None else "none"
        if part == "block":
            return recompute(self.sublayers, x, rope)
        return self.sublayers(x, rope, kv_cache, layer, part)

    def sublayers(self, x, rope=None, kv_cache=None, layer: int = 0, part: str = "none"):
        """x + attention(norm1(x)), then + mlp(norm2(.)); ``part`` "attention" or "mlp" recomputes that half."""
        if part == "attention":
            x = x + recompute(self.attention_branch, x, rope)
        else:
            x = x + self.attention_branch(x, rope, kv_cache, layer)
        return x + (recompute(self.mlp_branch, x) if part == "mlp" else self.mlp_branch(x))

    def attention_branch(self, x, rope=None, kv_cache=None, layer: int = 0):
        return self.attn(self.norm1(x), rope, kv_cache, layer)

    def mlp_branch(self, x):
        return self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        V = config.padded_vocab_size
        self.wte = nn.Embedding(V, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.pos == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, config.checkpointed(i)) for i in range(config.n_layer))
        self.norm_f = build_norm(config)
        self.lm_head = nn.Linear(config.n_embd, V, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        if config.pos == "rope":
            cos, sin = rope_cache(config.block_size, config.head_dim, config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        # which of the V logits are padding, not tokens (only when they are to be masked)
        pad = torch.arange(V) >= config.vocab_size if config.mask_vocab_padding and V > config.vocab_size else None
        self.register_buffer("vocab_padding", pad, persistent=False)
        self.apply(self.init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer)
        for name, p in self.named_parameters():
            if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def init_weights(module):
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
        """idx (B, T) token ids -> (logits (B, T, padded vocab), loss or None).

        With targets and ``loss_impl`` "chunked" / "chunked_liger" the head and the loss run
        together, chunk by chunk (``tutorial_lib.loss``), and no full logits exist: the result is
        ``(None, loss)``. Without targets (generation) every ``loss_impl`` returns the logits."""
        self.check_ids(idx, targets)
        B, T = idx.shape
        start = 0 if kv_cache is None else kv_cache.length
        if start + T > self.config.block_size:
            raise ValueError(f"sequence length {start + T} exceeds block_size="
                             f"{self.config.block_size} of this GPTConfig")
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(start, start + T, device=idx.device))
        x = self.drop(x)
        rope = (self.rope_cos, self.rope_sin) if self.config.pos == "rope" else None
        for i, block in enumerate(self.blocks):
            x = block(x, rope, kv_cache, i)
        if kv_cache is not None:
            kv_cache.advance()
        x = self.norm_f(x)
        if targets is not None and self.config.loss_impl != "full":
            with scope("loss"):  # inside it, each chunk's matmul is scoped "lm_head" again
                # masked padding: the chunks' logits come from the real rows only (the same as -inf)
                w = self.lm_head.weight if self.vocab_padding is None else self.lm_head.weight[: self.config.vocab_size]
                loss = chunked_linear_cross_entropy(x, w, targets, self.config.loss_chunk,
                                                    grad_in_forward=self.config.loss_impl == "chunked_liger")
            return None, loss
        logits = self.lm_head(x)  # (B, T, V)
        if self.vocab_padding is not None:
            with scope("loss"):  # padded rows are no tokens: exp(-inf) = 0 keeps them out of the softmax
                logits = logits.masked_fill(self.vocab_padding, float("-inf"))
        loss = None
        if targets is not None:
            with scope("loss"):
                # at least float32 (bf16 logits are upcast; float64 ones are not cut down)
                ce_dtype = torch.promote_types(logits.dtype, torch.float32)
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)).to(ce_dtype), targets.view(-1),
                                       ignore_index=IGNORE_INDEX)
        return logits, loss

    def check_ids(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None) -> None:
        """ValueError naming the problem for ids that are not (B, T) integers in the vocabulary.

        The bounds are read only on CPU tensors (on a GPU that would synchronise every step), and
        not while torch.compile traces the model (a data-dependent branch breaks its graph)."""
        if torch.compiler.is_compiling():
            return
        V = self.config.vocab_size
        for name, t, lo in (("idx", idx, 0), ("targets", targets, -1)):  # -1: ignored targets
            if t is None:
                continue
            if t.dim() != 2:
                raise ValueError(f"{name} has shape {tuple(t.shape)}; expected (B, T) token ids")
            if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
                raise ValueError(f"{name} has dtype {t.dtype}; expected integer token ids")
            if t.device.type == "cpu" and t.numel():
                mn, mx = int(t.min()), int(t.max())
                if mn < lo or mx >= V:
                    raise ValueError(f"{name} holds ids in [{mn}, {mx}]; they must be in [{lo}, {V - 1}] "
                                     f"(vocab_size={V})")
        if targets is not None and targets.shape != idx.shape:
            raise ValueError(f"targets has shape {tuple(targets.shape)}; expected idx's {tuple(idx.shape)}")

    def module_scopes(self) -> Dict[nn.Module, str]:
        """Profiler names of the submodules (``tutorial_lib.scopes`` attaches them when profiling)."""
        names = {"wte": "embedding", "wpe": "embedding", "drop": "embedding",
                 "norm1": "norm", "norm2": "norm", "norm_f": "norm",
                 "q_proj": "attention.qkv", "k_proj": "attention.qkv", "v_proj": "attention.qkv",
                 "o_proj": "attention.out", "resid_dropout": "attention.out",
                 "gate_proj": "mlp.up", "up_proj": "mlp.up", "down_proj": "mlp.down", "dropout": "mlp.down",
                 "lm_head": "lm_head"}
        return {m: names[path.rsplit(".", 1)[-1]] for path, m in self.named_modules()
                if path.rsplit(".", 1)[-1] in names}

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
