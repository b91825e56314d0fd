"""GPTConfig: one validated dataclass describing every model variant the tutorial teaches.

Every lesson is a change of one or two fields here (``n_kv_head`` for GQA, ``attn_backend`` for
flash attention, ``mlp_ratio`` / ``mlp`` for the MLP lessons, ``window`` for sliding windows), so
that "before" and "after" are the same code with a different config.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

MLP_KINDS = ("gelu", "swiglu")
NORM_KINDS = ("layernorm", "rmsnorm")
POS_KINDS = ("learned", "rope")
GELU_APPROX = ("none", "tanh")
# eager: materialised T x T scores (the "before"); sdpa: PyTorch's fused kernel; tiled: the teaching
# flash attention (pure PyTorch, linear memory); flex: FlexAttention with a block mask;
# local: O(T*W) chunked sliding-window attention (needs a window).
ATTN_BACKENDS = ("eager", "sdpa", "tiled", "flex", "local")

SWIGLU_PARAM_MATCHED_RATIO = 8.0 / 3.0


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"GPTConfig.{name}={value!r} is not one of {list(allowed)}")


@dataclass(frozen=True)
class GPTConfig:
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # query heads
    n_kv_head: Optional[int] = None  # key/value heads: None = n_head (MHA); 1 = MQA; else GQA
    n_embd: int = 768  # residual stream width
    block_size: int = 1024  # longest sequence the model accepts (learned positions: table size)
    vocab_size: int = 50257  # GPT-2 BPE vocabulary
    pad_vocab_multiple: Optional[int] = None  # e.g. 64 -> 50,304 rows in wte/lm_head (nanoGPT)
    mlp: str = "gelu"  # "gelu" (Linear-GELU-Linear) or "swiglu" (gate/up/down)
    mlp_ratio: Optional[float] = None  # hidden = ratio * n_embd; None: 4 for gelu, 8/3 for swiglu
    gelu_approx: str = "none"  # "tanh" for the original GPT-2's approximate GELU
    norm: str = "rmsnorm"  # "rmsnorm" or "layernorm"
    norm_eps: float = 1e-5  # epsilon of the norms
    pos: str = "rope"  # "rope" (rotary, no parameters) or "learned" (GPT-2's wpe table)
    rope_theta: float = 10000.0  # rotary base frequency
    attn_backend: str = "sdpa"  # one of ATTN_BACKENDS
    window: Optional[int] = None  # sliding window: a query sees itself and window-1 keys before it
    tile_size: int = 64  # tile edge of the "tiled" backend
    bias: bool = False  # biases in Linear layers and LayerNorm
    dropout: float = 0.0  # dropout on attention probabilities and residual branches
    tie_embeddings: bool = True  # lm_head shares its weight with the token embedding
    name: str = field(default="custom", compare=False)  # a label for tables and plots

    def __post_init__(self) -> None:
        for f in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "tile_size"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"GPTConfig.{f}={v!r} must be a positive integer")
        if self.n_kv_head is not None and (not isinstance(self.n_kv_head, int) or self.n_kv_head < 1):
            raise ValueError(f"GPTConfig.n_kv_head={self.n_kv_head!r} must be a positive integer or None")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig.n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.n_head % self.kv_heads:
            raise ValueError(
                f"GPTConfig.n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}")
        _choice("mlp", self.mlp, MLP_KINDS)
        _choice("norm", self.norm, NORM_KINDS)
        _choice("pos", self.pos, POS_KINDS)
        _choice("gelu_approx", self.gelu_approx, GELU_APPROX)
        _choice("attn_backend", self.attn_backend, ATTN_BACKENDS)
        if self.mlp_ratio is not None and not self.mlp_ratio > 0:
            raise ValueError(f"GPTConfig.mlp_ratio={self.mlp_ratio!r} must be > 0")
        if self.window is not None and (not isinstance(self.window, int) or self.window < 1):
            raise ValueError(f"GPTConfig.window={self.window!r} must be None or an integer >= 1")
        if self.attn_backend == "local" and self.window is None:
            raise ValueError("GPTConfig.attn_backend='local' needs a window (got window=None)")
        if self.pad_vocab_multiple is not None and self.pad_vocab_multiple < 1:
            raise ValueError(f"GPTConfig.pad_vocab_multiple={self.pad_vocab_multiple!r} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout={self.dropout!r} must be in [0, 1)")
        if self.pos == "rope" and self.head_dim % 2:
            raise ValueError(f"GPTConfig: RoPE needs an even head_dim, got {self.head_dim}")

    # ---- derived sizes -------------------------------------------------------------------
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
        return (f"{self.name}: {self.n_layer}L {self.n_head}H d{self.n_embd} {attn}, "
                f"{self.mlp} x{self.ratio:.3g}, {self.norm}, {self.pos}, {self.attn_backend}{win}")


# ---- presets -------------------------------------------------------------------------------
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
