"""Every size the lessons, the explorers and the guide suite measure at: one ``Sizes`` per profile.

``get_sizes()`` picks the profile from ``TUTORIAL_PROFILE`` (else from the device), so the same
notebook teaches on a laptop CPU, runs in seconds under CI and measures the seed's own setting on
a GPU:

- ``smoke``: the ``tiny`` model at toy sizes -- CI and tests, seconds per notebook.
- ``cpu``:   GPT-2 small dimensions at a batch and length that keep a notebook to minutes on
             2 cores; quality (training) runs use the smaller ``gpt2_mini``.
- ``gpu``:   the seed's setting -- GPT-2 small, B=4, T=512, bf16 autocast -- and longer T.

The LM-head lesson (``lm_head``) measures the seed's own setting on ``cpu`` too: its point is the
head and the loss at GPT-2's real vocabulary, which a smaller model would hide.

Each section is a frozen dataclass with keyword-only fields, so a table reads as names, not as
positions. A new lesson adds one section here. Analytic numbers (FLOPs, parameters, memory
formulas) never depend on the profile: they use the real GPT-2 small.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

from tutorial_lib import settings


@dataclass(frozen=True, kw_only=True)
class Step:
    """One measured training step: time, memory and the per-component profile (01-05)."""
    preset: str  # model preset
    batch: int
    seq_len: int
    dtype: str  # "bfloat16" (autocast) on CUDA, "float32" on CPU
    min_run_time: float  # seconds torch.utils.benchmark spends per measurement
    rounds: int  # interleaved A/B rounds (speedup = median of per-round ratios)
    profile_steps: int  # profiled steps after warm-up

    @property
    def torch_dtype(self):
        return settings.parse_dtype(self.dtype)


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """The attention core alone, cost vs sequence length (01, 03)."""
    seq_lens: Tuple[int, ...]
    batch: int
    n_head: int = 12
    head_dim: int = 64


@dataclass(frozen=True, kw_only=True)
class Decode:
    """KV-cache decoding. GQA pays when reading the cache costs as much as reading the weights:
    GPT-2 small holds ~124 M weights and 12 x 2 x 768 = 18,432 cached values per token (MHA), so
    the cache matches the weights at batch x context ~ 6,700 tokens; the contexts reach past it."""
    batch: int
    contexts: Tuple[int, ...]
    new_tokens: int


@dataclass(frozen=True, kw_only=True)
class Quality:
    """Short seeded training runs that compare validation loss (02, 04-07, the suite)."""
    preset: str
    batch: int
    seq_len: int
    steps: int
    eval_every: int
    eval_batches: int
    window: int  # W of the sliding-window runs
    seeds: Tuple[int, ...]  # every variant runs once per seed: mean and spread, not one run

    def train_kwargs(self) -> dict:
        """TrainConfig fields of a run at these sizes (pass them to ``train.TrainConfig``)."""
        return dict(steps=self.steps, batch_size=self.batch, seq_len=self.seq_len,
                    eval_every=self.eval_every, eval_batches=self.eval_batches,
                    warmup_steps=max(1, self.steps // 10))


@dataclass(frozen=True, kw_only=True)
class Window:
    """The sliding-window lesson (06): the attention core vs T at a fixed W, and the whole model."""
    window: int
    seq_lens: Tuple[int, ...]
    n_head: int
    head_dim: int
    batch: int
    rounds: int
    min_run_time: float
    payoff_preset: str  # a whole training step with and without the window
    payoff_seqs: Tuple[int, ...]
    payoff_window: int
    payoff_batch: int


@dataclass(frozen=True, kw_only=True)
class Final:
    """Everything together (07): a short and a long sequence setting."""
    preset: str
    short_batch: int
    short_seq: int  # the seed's T < 512 branch (its own B=4, T=512 on a GPU)
    long_batch: int
    long_seq: int  # the T >= 512 branch
    long_window: int
    rounds: int
    min_run_time: float
    compile: bool  # also time torch.compile'd variants


@dataclass(frozen=True, kw_only=True)
class Suite:
    """The guide suite (``bench --suite guide``): its step comparisons and curves."""
    preset: str  # model of the step comparisons
    batch: int
    seq_len: int
    attn_seqs: Tuple[int, ...]  # T of the attention-core curves
    attn_batch: int
    attn_heads: int
    window: int
    window_seqs: Tuple[int, ...]
    min_run_time: float
    rounds: int
    compile: bool


@dataclass(frozen=True, kw_only=True)
class Roofline:
    """The roofline lesson (09) and the suite's ``roofline`` section: the machine's ceilings, the
    step placed on the roofline per component, and whole steps predicted and measured."""
    mm_sizes: Tuple[int, ...]  # n of the n x n matmuls whose best FLOP/s is the peak
    stream_bytes: int  # size of each array of the bandwidth measurement
    first_touch_sizes: Tuple[int, ...]  # allocate-and-fill: the largest, >= 32 MiB, is the first touch (CPU)
    min_run_time: float
    rounds: int  # rounds of the ceilings' probes, timed in turn with the checked steps
    preset: str  # the step placed on the roofline, component by component
    batch: int
    seq_len: int
    checks: Tuple[Tuple[str, int, int], ...]  # (preset, B, T) steps predicted, then measured
    backends: Tuple[str, ...]  # attention backends of the checks


@dataclass(frozen=True, kw_only=True)
class LMHead:
    """The LM-head lesson (08): the head + loss alone against chunk size, T and V, and the whole
    training step with the full and the chunked loss (the seed's setting on cpu and gpu)."""
    preset: str  # the whole-step comparison
    batch: int
    seq_len: int
    chunk: int  # loss_chunk of the step comparison (the GPTConfig default on cpu and gpu)
    timed_batch: int  # the whole step's timing batch (its memory is counted, exactly, at ``batch``)
    rounds: int  # interleaved A/B rounds of the whole step
    min_run_time: float
    sweep_rounds: int  # interleaved rounds of the head + loss alone (one timed call per round)
    n_embd: int  # the head + loss alone: hidden width C ...
    tokens: int  # ... N = B x T tokens ...
    vocab: int  # ... and vocabulary V at the fixed point of each sweep
    chunks: Tuple[int, ...]  # chunk sizes to sweep at (tokens, vocab)
    seq_lens: Tuple[int, ...]  # tokens N = T at batch 1 to sweep, at vocab
    vocabs: Tuple[int, ...]  # vocabularies to sweep at tokens (incl. the padded 50,304 on cpu/gpu)


@dataclass(frozen=True, kw_only=True)
class OwnPaths:
    """The project's own paths, fast and steady (the guide's ``own_paths`` section)."""
    window: int  # W of the local-window peak and the windowed mask
    window_seqs: Tuple[int, ...]  # T of the local-window peak vs causal SDPA (slope over these)
    n_head: int
    head_dim: int
    mask_seq: int  # T of the windowed-mask before/after
    ab_attention_seq: int  # eager attention T of the huge-page A/B (fresh processes)
    ab_rounds: int
    mfu_preset: str  # the forward+backward whose MFU is measured
    mfu_batch: int
    mfu_seq: int
    peak_sizes: Tuple[int, ...]  # torch.mm sizes of the matmul peak, timed in the same rounds as the MFU's steps
    rounds: int
    min_run_time: float


@dataclass(frozen=True, kw_only=True)
class Ladder:
    """The speed ladder (11) and the suite's ``speed_ladder`` section: every rung's training step,
    the matmul peak of each dtype and the roofline's other probes, all timed in the same rounds."""
    preset: str
    batch: int
    seq_len: int
    rounds: int
    min_run_time: float
    peak_sizes: Tuple[int, ...]  # torch.mm n x n per dtype: the best is that dtype's peak
    compile: bool  # time the torch.compile rungs (False: they are reported as not run)
    compile_modes: Tuple[str, ...]  # other torch.compile modes, as alternatives beside the default
    numerics_steps: int  # the short runs (fp32 vs bf16 over Quality's seeds, the unmasked padding) at Quality's B, T


@dataclass(frozen=True, kw_only=True)
class MemoryBudget:
    """The memory-budget lesson (12) and the suite's ``memory_budget`` section: the checkpointing
    policies and the micro-batches measured on one model, and the planner's budgets."""
    preset: str
    batch: int  # sequences per step of the checkpointing policies' measurements
    seq_len: int
    micro_batches: Tuple[int, ...]  # micro-batch sizes of the accumulation sweep (each divides micro_step_batch)
    micro_step_batch: int  # sequences per optimizer step of the accumulation sweep
    tokens_per_step: int  # the planner's target per optimizer step (a multiple of seq_len)
    policies: Tuple[str, ...]  # the checkpointing policies measured (lessons.memory_budget.POLICIES)
    budgets_mib: Tuple[int, ...]  # the budgets whose chosen plans are measured (MiB)
    dtypes: Tuple[str, ...]  # the dtypes a plan may use (each needs the machine's ceilings in it)
    rounds: int  # interleaved rounds: the ceilings' probes and the steps in turn
    min_run_time: float


@dataclass(frozen=True, kw_only=True)
class Sizes:
    name: str  # smoke | cpu | gpu
    step: Step
    seed: Step  # the seed's own setting (GPT-2 small, B=4, T=512) where a few steps suffice
    sweep: Sweep
    decode: Decode
    quality: Quality
    window: Window
    final: Final
    suite: Suite
    roofline: Roofline
    lm_head: LMHead
    own_paths: OwnPaths
    ladder: Ladder
    memory_budget: MemoryBudget

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


ALL_POLICIES = ("none", "attention", "mlp", "block", "block every 2")  # lessons.memory_budget.POLICIES
PROFILES = {
    "smoke": Sizes(
        name="smoke",
        step=Step(preset="tiny", batch=2, seq_len=32, dtype="float32", min_run_time=0.05, rounds=1,
                  profile_steps=1),
        seed=Step(preset="tiny", batch=2, seq_len=32, dtype="float32", min_run_time=0.02, rounds=1,
                  profile_steps=1),
        sweep=Sweep(seq_lens=(32, 64, 128), batch=1),
        decode=Decode(batch=2, contexts=(16, 64), new_tokens=4),
        quality=Quality(preset="tiny", batch=4, seq_len=32, steps=6, eval_every=3, eval_batches=1,
                        window=8, seeds=(0, 1)),
        window=Window(window=32, seq_lens=(256, 512, 1024), n_head=4, head_dim=32, batch=1, rounds=1,
                      min_run_time=0.01, payoff_preset="tiny", payoff_seqs=(128,), payoff_window=32,
                      payoff_batch=1),
        final=Final(preset="tiny", short_batch=2, short_seq=64, long_batch=1, long_seq=256,
                    long_window=64, rounds=1, min_run_time=0.01, compile=False),
        suite=Suite(preset="tiny", batch=2, seq_len=32, attn_seqs=(32, 64, 128), attn_batch=1,
                    attn_heads=4, window=16, window_seqs=(64, 128), min_run_time=0.02, rounds=3,
                    compile=False),
        roofline=Roofline(mm_sizes=(64, 128), stream_bytes=2**20, first_touch_sizes=(2**20,),
                          min_run_time=0.01, rounds=1, preset="tiny", batch=2, seq_len=32,
                          checks=(("tiny", 2, 32),), backends=("sdpa",)),
        lm_head=LMHead(preset="tiny", batch=2, seq_len=32, chunk=16, timed_batch=2, rounds=1, min_run_time=0.01,
                       sweep_rounds=1, n_embd=64, tokens=64, vocab=1000, chunks=(16, 64), seq_lens=(32, 64),
                       vocabs=(1000, 1024)),
        own_paths=OwnPaths(window=16, window_seqs=(64, 128), n_head=2, head_dim=16, mask_seq=64,
                           ab_attention_seq=64, ab_rounds=1, mfu_preset="tiny", mfu_batch=2, mfu_seq=32,
                           peak_sizes=(256,), rounds=1, min_run_time=0.01),
        ladder=Ladder(preset="tiny", batch=2, seq_len=32, rounds=1, min_run_time=0.01, peak_sizes=(128,),
                      compile=False, compile_modes=(), numerics_steps=6),
        # budgets around tiny's predicted peaks (87-113 MiB): checkpointing, accumulation, neither
        memory_budget=MemoryBudget(preset="tiny", batch=2, seq_len=32, micro_batches=(1, 2), micro_step_batch=2,
                                   tokens_per_step=128, policies=("none", "block"), budgets_mib=(88, 120),
                                   dtypes=("float32",), rounds=1, min_run_time=0.01)),
    "cpu": Sizes(
        name="cpu",
        # GPT-2 small's step takes about 2 s on 2 cores: one timed call per round (min_run_time
        # below it), 3 rounds -- a variant costs about 7 calls (measure.timing.rounds_seconds)
        step=Step(preset="gpt2_small", batch=1, seq_len=256, dtype="float32", min_run_time=0.5,
                  rounds=3, profile_steps=2),
        seed=Step(preset="gpt2_small", batch=4, seq_len=512, dtype="float32", min_run_time=1.0,
                  rounds=3, profile_steps=2),
        sweep=Sweep(seq_lens=(128, 256, 512, 1024), batch=1),
        # 4 x 2,048 cached tokens: past the ~6,700 where reading the cache costs as much as the weights
        decode=Decode(batch=4, contexts=(128, 512, 2048), new_tokens=8),
        quality=Quality(preset="gpt2_mini", batch=8, seq_len=64, steps=80, eval_every=20,
                        eval_batches=4, window=16, seeds=(0, 1, 2)),
        window=Window(window=256, seq_lens=(512, 1024, 2048, 4096), n_head=12, head_dim=64, batch=1,
                      rounds=3, min_run_time=0.3, payoff_preset="gpt2_small", payoff_seqs=(512, 1024),
                      payoff_window=128, payoff_batch=1),
        # the guide suite's own step setting (gpt2_mini, B=2, T=256), so 07's live table sits beside
        # the recorded one; 3 rounds, the fewest that give a speedup a verdict (tutorial_lib.speedups)
        final=Final(preset="gpt2_mini", short_batch=2, short_seq=256, long_batch=1, long_seq=1024,
                    long_window=256, rounds=3, min_run_time=0.3, compile=False),
        # GPT-2 small's step takes seconds on 2 cores; the 4-layer gpt2_mini keeps the suite's
        # step comparisons near 20 minutes (the notebooks measure GPT-2 small itself)
        suite=Suite(preset="gpt2_mini", batch=2, seq_len=256, attn_seqs=(128, 256, 512, 1024, 2048),
                    attn_batch=1, attn_heads=12, window=128, window_seqs=(512, 1024, 2048, 4096),
                    min_run_time=0.3, rounds=5, compile=True),
        # the ceilings take ~15 s; the two checks are the suite's gpt2_mini step and notebook
        # 01's GPT-2 small step
        roofline=Roofline(mm_sizes=(128, 256, 512, 1024, 2048), stream_bytes=128 * 2**20,
                          first_touch_sizes=(64 * 2**20,), min_run_time=0.3, rounds=3,
                          preset="gpt2_small", batch=1, seq_len=256,
                          checks=(("gpt2_mini", 2, 256), ("gpt2_small", 1, 256)), backends=("sdpa", "eager")),
        # the seed's own setting for the memory (exact bytes); the step is timed at B=1 (GPT-2 small's
        # B=4 step takes seconds here) in 3 rounds, the fewest that give a speedup a verdict; the head
        # alone at 1,024 tokens (one forward + backward of GPT-2's head is seconds on 2 cores)
        lm_head=LMHead(preset="gpt2_small", batch=4, seq_len=512, chunk=1024, timed_batch=1, rounds=3,
                       min_run_time=0.5,
                       sweep_rounds=3, n_embd=768, tokens=1024, vocab=50257, chunks=(128, 256, 512, 1024),
                       seq_lens=(256, 512, 1024, 2048), vocabs=(8192, 32768, 50257, 50304)),
        own_paths=OwnPaths(window=256, window_seqs=(1024, 2048, 4096), n_head=12, head_dim=64, mask_seq=4096,
                           ab_attention_seq=1024, ab_rounds=3, mfu_preset="gpt2_mini", mfu_batch=2, mfu_seq=256,
                           peak_sizes=(1024, 2048), rounds=5, min_run_time=0.3),
        # the measurement: gpt2_mini, B=4, T=256 (bf16 autocast 1.38-1.63x on a quiet AMX
        # Xeon); the whole notebook, compiles included, within 10 minutes on 2 cores
        ladder=Ladder(preset="gpt2_mini", batch=4, seq_len=256, rounds=3, min_run_time=0.5,
                      peak_sizes=(1024, 2048), compile=True, compile_modes=(), numerics_steps=40),
        # gpt2_mini: its steps take about a second here; its head (V=50,257 at C=384) is most of its
        # memory, so the loss is the first lever and checkpointing the next. The budgets span its
        # predicted peaks (624 MiB - 1.8 GiB at 2,048 tokens per step): three different plans
        memory_budget=MemoryBudget(preset="gpt2_mini", batch=2, seq_len=256, micro_batches=(1, 2, 4),
                                   micro_step_batch=4, tokens_per_step=2048, policies=ALL_POLICIES,
                                   budgets_mib=(700, 900, 2048), dtypes=("float32",), rounds=3, min_run_time=0.3)),
    "gpu": Sizes(
        name="gpu",
        step=Step(preset="gpt2_small", batch=4, seq_len=512, dtype="bfloat16", min_run_time=1.0,
                  rounds=3, profile_steps=3),
        seed=Step(preset="gpt2_small", batch=4, seq_len=512, dtype="bfloat16", min_run_time=0.5,
                  rounds=3, profile_steps=3),
        sweep=Sweep(seq_lens=(256, 512, 1024, 2048, 4096), batch=4),
        decode=Decode(batch=16, contexts=(512, 2048, 8192), new_tokens=32),
        quality=Quality(preset="gpt2_small", batch=16, seq_len=512, steps=300, eval_every=50,
                        eval_batches=10, window=128, seeds=(0, 1, 2)),
        window=Window(window=256, seq_lens=(1024, 2048, 4096, 8192, 16384), n_head=12, head_dim=64,
                      batch=4, rounds=3, min_run_time=0.3, payoff_preset="gpt2_small",
                      payoff_seqs=(1024, 2048, 4096), payoff_window=256, payoff_batch=4),
        final=Final(preset="gpt2_small", short_batch=4, short_seq=512, long_batch=4, long_seq=2048,
                    long_window=512, rounds=3, min_run_time=0.5, compile=True),
        suite=Suite(preset="gpt2_small", batch=4, seq_len=512,
                    attn_seqs=(256, 512, 1024, 2048, 4096, 8192), attn_batch=4, attn_heads=12,
                    window=256, window_seqs=(512, 1024, 2048, 4096, 8192, 16384), min_run_time=0.5,
                    rounds=3, compile=True),
        # the checks: the seed's setting, and the H200 training runs' (B=16, T=512)
        roofline=Roofline(mm_sizes=(4096, 8192), stream_bytes=1024 * 2**20, first_touch_sizes=(),
                          min_run_time=0.3, rounds=3, preset="gpt2_small", batch=4, seq_len=512,
                          checks=(("gpt2_small", 4, 512), ("gpt2_small", 16, 512)), backends=("sdpa", "eager")),
        lm_head=LMHead(preset="gpt2_small", batch=4, seq_len=512, chunk=1024, timed_batch=4, rounds=3,
                       min_run_time=0.5, sweep_rounds=5, n_embd=768, tokens=2048, vocab=50257,
                       chunks=(128, 256, 512, 1024, 2048),
                       seq_lens=(1024, 2048, 4096, 8192, 16384),
                       vocabs=(32000, 50257, 50304, 128256, 262144)),
        own_paths=OwnPaths(window=256, window_seqs=(4096, 8192, 16384), n_head=12, head_dim=64, mask_seq=4096,
                           ab_attention_seq=1024, ab_rounds=2, mfu_preset="gpt2_small", mfu_batch=4, mfu_seq=512,
                           peak_sizes=(4096, 8192), rounds=3, min_run_time=0.3),
        # the seed's setting; max-autotune's compile takes minutes, more than a device run can spend
        ladder=Ladder(preset="gpt2_small", batch=4, seq_len=512, rounds=3, min_run_time=0.3,
                      peak_sizes=(4096, 8192), compile=True, compile_modes=("reduce-overhead",),
                      numerics_steps=300),
        # the seed's setting (B=4, T=512, bf16): one budget, below the plain step's 3.7 GiB peak
        memory_budget=MemoryBudget(preset="gpt2_small", batch=4, seq_len=512, micro_batches=(1, 2, 4),
                                   micro_step_batch=4, tokens_per_step=2048, policies=ALL_POLICIES,
                                   budgets_mib=(2560,), dtypes=("bfloat16",), rounds=3, min_run_time=0.3)),
}


def get_sizes(name: Optional[str] = None, device=None) -> Sizes:
    """The sizes of profile ``name`` (default: $TUTORIAL_PROFILE, else ``gpu`` on CUDA, else ``cpu``)."""
    return PROFILES[settings.profile_name(name, device)]
