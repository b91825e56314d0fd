"""Real tokens for the lessons: the GPT-2 tokenizer (offline), the bundled corpus, splits, batches.

Everything here works with no network. The tokenizer is tiktoken's GPT-2 byte-pair encoding
(``r50k_base``: the same ranks and split pattern as tiktoken's ``"gpt2"``) built from the ranks file
shipped in ``tutorial_lib/assets/``; the corpus is 42 works of Shakespeare (about 5 MB of text,
1.57 M tokens). See ``assets/PROVENANCE.md`` for where both files come from.

    >>> enc = get_tokenizer()
    >>> enc.encode("Hello world")
    [15496, 995]
    >>> x, y = BatchSampler("train", batch_size=4, seq_len=128, seed=0).next_batch()  # (4, 128) each

The corpus is tokenized once and cached on disk (``$TUTORIAL_CACHE_DIR``, default
``~/.cache/tutorial_lib``) under a name that contains the corpus's sha256, so a changed corpus is
tokenized again. The cache records the tokens' count and sha256 and is checked on every read: an
empty, truncated, overwritten or foreign file is tokenized again (with a warning), never used.
The last 10% of the tokens are the validation split.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

import numpy as np
import tiktoken
import torch
from tiktoken.load import load_tiktoken_bpe

from tutorial_lib.files import atomic_write_bytes

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
TOKENIZER_FILE = ASSETS_DIR / "r50k_base.tiktoken"
# The hash tiktoken itself expects for r50k_base (tiktoken_ext/openai_public.py).
TOKENIZER_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
CORPUS_FILE = ASSETS_DIR / "shakespeare.txt.gz"
CORPUS_SHA256 = "35e311d6c50d379b508281c38bf5c126882a8922cb751b183897d5bedd6ffccd"  # of the .gz

# tiktoken's r50k_base / gpt2 pre-tokenizer pattern (tiktoken_ext/openai_public.py, r50k_pat_str).
GPT2_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
ENDOFTEXT = "<|endoftext|>"
EOT_TOKEN = 50256  # GPT-2's only special token; n_vocab = 50,257

VAL_FRACTION = 0.1  # the last 10% of tokens (rounded down) are validation
SPLITS = ("train", "val")
CACHE_ENV = "TUTORIAL_CACHE_DIR"
_CACHE_FORMAT = "v2"  # bump when the cache's content changes (v2: .npz with tokens + meta)


# ---- tokenizer -----------------------------------------------------------------------------
def sha256_file(path: Union[str, Path]) -> str:
    """The file's sha256 (hex), remembered while its size and modification time stay the same."""
    st = os.stat(path)
    return _sha256_file(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_file(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_encoding(path: Union[str, Path] = TOKENIZER_FILE, expected_sha256: str = TOKENIZER_SHA256):
    """Build the GPT-2 ``tiktoken.Encoding`` from a local ranks file (no network, no cache lookup).

    Raises ``RuntimeError`` when the file's sha256 is not ``expected_sha256``.
    """

    path = Path(path)
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise RuntimeError(
            f"tokenizer file {path} is corrupted or not the GPT-2 vocabulary: sha256 {actual}, "
            f"expected {expected_sha256}. Reinstall tutorial_lib (or restore the file from git).")
    # A local path makes tiktoken read the file directly; it may also copy it into its own cache.
    ranks = load_tiktoken_bpe(str(path), expected_hash=expected_sha256)
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PAT_STR, mergeable_ranks=ranks,
                             special_tokens={ENDOFTEXT: EOT_TOKEN})


@functools.lru_cache(maxsize=None)
def get_tokenizer():
    """The GPT-2 tokenizer (a cached ``tiktoken.Encoding`` named "gpt2"), built offline."""
    return load_encoding(TOKENIZER_FILE, TOKENIZER_SHA256)


# ---- corpus and token cache ----------------------------------------------------------------
def load_corpus_text(path: Union[str, Path] = CORPUS_FILE) -> str:
    """The whole bundled corpus as one string (about 5 MB of ASCII text)."""
    with gzip.open(path, "rb") as f:
        return f.read().decode("utf-8")


def cache_dir() -> Path:
    """Where derived data is cached: ``$TUTORIAL_CACHE_DIR`` or ``~/.cache/tutorial_lib``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tutorial_lib"


def token_cache_path(directory: Optional[Union[str, Path]] = None,
                     corpus: Union[str, Path] = CORPUS_FILE) -> Path:
    """The cache file for ``corpus``'s tokens; its name holds the corpus's sha256."""
    directory = cache_dir() if directory is None else Path(directory)
    return directory / f"tokens-gpt2-{_CACHE_FORMAT}-{sha256_file(corpus)}.npz"


def tokenize_corpus(corpus: Union[str, Path] = CORPUS_FILE) -> np.ndarray:
    """Tokenize the corpus now (no cache): a uint16 array, about 0.3 s for the bundled 5 MB."""
    ids = get_tokenizer().encode_ordinary(load_corpus_text(corpus))
    return np.asarray(ids, dtype=np.uint16)  # every GPT-2 id (< 50,257) fits in 16 bits


def _token_meta(tokens: np.ndarray, corpus_sha256: str) -> dict:
    """What the cache records about its tokens, to check them against on every read."""
    return {"format": _CACHE_FORMAT, "corpus_sha256": corpus_sha256, "n_tokens": int(tokens.size),
            "max_id": int(tokens.max()) if tokens.size else -1,
            "tokens_sha256": hashlib.sha256(tokens.tobytes()).hexdigest()}


def read_token_cache(path: Union[str, Path], corpus_sha256: str) -> Tuple[Optional[np.ndarray], str]:
    """(tokens, "") from a valid cache file, else (None, why it is not one).

    Valid means: a readable ``.npz`` holding a non-empty 1-D uint16 ``tokens`` array and the
    ``meta`` it was written with, made from this corpus (its sha256), every id inside GPT-2's
    vocabulary, and the array's length and sha256 equal to the recorded ones -- so an empty,
    truncated, overwritten or foreign file is never used."""
    try:
        with open(path, "rb") as fh:  # ours to close: np.load leaks its own handle on a broken zip
            loaded = np.load(fh, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                return None, f"is a bare {type(loaded).__name__}, not a {_CACHE_FORMAT} token cache (.npz)"
            with loaded as f:
                tokens, meta = f["tokens"], json.loads(str(f["meta"]))
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:  # EOFError: 0 bytes
        return None, f"is unreadable ({type(e).__name__}: {e})"
    if tokens.dtype != np.uint16 or tokens.ndim != 1 or tokens.size == 0:
        return None, f"holds a {tokens.dtype} array of shape {tokens.shape}, not 1-D uint16 tokens"
    if not isinstance(meta, dict) or meta.get("format") != _CACHE_FORMAT:
        return None, f"is not a {_CACHE_FORMAT} token cache"
    if meta.get("corpus_sha256") != corpus_sha256:
        return None, f"was made from another corpus (sha256 {meta.get('corpus_sha256')})"
    if int(tokens.max()) > EOT_TOKEN:
        return None, f"holds id {int(tokens.max())}, outside GPT-2's vocabulary (< {EOT_TOKEN + 1})"
    actual = _token_meta(tokens, corpus_sha256)
    for key in ("n_tokens", "tokens_sha256"):
        if meta.get(key) != actual[key]:
            return None, f"is damaged: {key} is {actual[key]}, the cache recorded {meta.get(key)}"
    return tokens, ""


def write_token_cache(path: Union[str, Path], tokens: np.ndarray, corpus_sha256: str) -> Path:
    """Write ``tokens`` and their ``meta`` to ``path`` atomically (``files.atomic_write_bytes``)."""
    buf = io.BytesIO()
    np.savez(buf, tokens=tokens, meta=np.array(json.dumps(_token_meta(tokens, corpus_sha256))))
    return atomic_write_bytes(path, buf.getvalue())


@functools.lru_cache(maxsize=4)
def _load_tokens(path: str, corpus: str) -> np.ndarray:
    cache, corpus_sha = Path(path), sha256_file(corpus)
    arr, why = read_token_cache(cache, corpus_sha)
    if arr is None:
        if why != "missing":
            warnings.warn(f"token cache {cache} {why}; tokenizing the corpus again", RuntimeWarning,
                          stacklevel=3)
        arr = tokenize_corpus(corpus)
        try:
            write_token_cache(cache, arr, corpus_sha)
        except OSError as e:  # a read-only home must not stop a lesson
            warnings.warn(f"could not cache tokens at {cache}: {e}", RuntimeWarning, stacklevel=3)
    arr.setflags(write=False)  # shared by every caller: nobody may change it in place
    return arr


def load_tokens(directory: Optional[Union[str, Path]] = None) -> np.ndarray:
    """All corpus tokens (read-only uint16 array), tokenized once and cached on disk."""
    return _load_tokens(str(token_cache_path(directory)), str(CORPUS_FILE))


# ---- splits --------------------------------------------------------------------------------
def split_sizes(n_tokens: int) -> Tuple[int, int]:
    """(n_train, n_val) for ``n_tokens``: validation is floor(10%) of the tokens, at the end."""
    n_val = int(n_tokens * VAL_FRACTION)
    return n_tokens - n_val, n_val


def get_split(name: str) -> np.ndarray:
    """The "train" tokens (first 90%) or the "val" tokens (last 10%), as a read-only view."""
    if name not in SPLITS:
        raise ValueError(f"split={name!r} is not one of {list(SPLITS)}")
    tokens = load_tokens()
    n_train, _ = split_sizes(len(tokens))
    return tokens[:n_train] if name == "train" else tokens[n_train:]


# ---- batches -------------------------------------------------------------------------------
def _check_int(name: str, value, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")


class BatchSampler:
    """Seeded random windows of a split: ``(x, y)`` int64 tensors of shape (B, T), y = x shifted by 1.

    Every step draws ``batch_size * world_size`` window starts from one generator seeded with
    ``seed``, and rank ``r`` keeps the r-th block of ``batch_size``. So ranks of a data-parallel
    run see disjoint slices of the same stream, and their union is exactly what one process with
    ``batch_size * world_size`` would see. ``split`` is "train", "val" or a 1-D token array.
    """

    def __init__(self, split: Union[str, np.ndarray] = "train", batch_size: int = 4,
                 seq_len: int = 128, seed: int = 0, rank: int = 0, world_size: int = 1,
                 device: Union[str, torch.device] = "cpu"):
        _check_int("batch_size", batch_size, 1)
        _check_int("seq_len", seq_len, 1)
        _check_int("seed", seed, 0)
        _check_int("world_size", world_size, 1)
        _check_int("rank", rank, 0)
        if rank >= world_size:
            raise ValueError(f"rank={rank!r} must be < world_size={world_size!r}")
        if isinstance(split, str):
            self.split_name, tokens = split, get_split(split)
        else:
            self.split_name, tokens = "custom", np.asarray(split)
            if tokens.ndim != 1:
                raise ValueError(f"split has shape {tokens.shape}; expected a 1-D token array")
        if seq_len + 1 > len(tokens):
            raise ValueError(f"seq_len={seq_len} needs seq_len+1={seq_len + 1} tokens but split "
                             f"{self.split_name!r} has only {len(tokens)}")
        self.tokens = tokens
        self.batch_size, self.seq_len, self.seed = int(batch_size), int(seq_len), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.device = torch.device(device)
        self._offsets = np.arange(self.seq_len + 1)  # (T+1,)
        self.reset()

    def reset(self) -> None:
        """Start the stream again from the first batch."""
        self.generator = torch.Generator().manual_seed(self.seed)
        self.step = 0

    def next_batch(self) -> Tuple[torch.Tensor, torch.Tensor]:
        n_starts = len(self.tokens) - self.seq_len  # starts 0 .. len-(T+1) inclusive
        starts = torch.randint(n_starts, (self.batch_size * self.world_size,),
                               generator=self.generator).numpy()
        mine = starts[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        windows = self.tokens[mine[:, None] + self._offsets].astype(np.int64)  # (B, T+1)
        x = torch.from_numpy(np.ascontiguousarray(windows[:, :-1]))  # (B, T) inputs
        y = torch.from_numpy(np.ascontiguousarray(windows[:, 1:]))  # (B, T) next-token targets
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
            y = y.pin_memory().to(self.device, non_blocking=True)
        elif self.device.type != "cpu":
            x, y = x.to(self.device), y.to(self.device)
        self.step += 1
        return x, y

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def __repr__(self) -> str:
        return (f"BatchSampler(split={self.split_name!r}, batch_size={self.batch_size}, "
                f"seq_len={self.seq_len}, seed={self.seed}, rank={self.rank}, "
                f"world_size={self.world_size}, device='{self.device}')")


def random_batch(vocab_size: int, batch_size: int, seq_len: int, device=None, seed: int = 0
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random token ids (B, T) and next-token targets (B, T): timing does not depend on the text."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab_size, (batch_size, seq_len + 1), generator=g).to(device)
    return x[:, :-1].contiguous(), x[:, 1:].contiguous()


def get_batch(split: Union[str, np.ndarray] = "train", batch_size: int = 4, seq_len: int = 128,
              seed: int = 0, device: Union[str, torch.device] = "cpu"
              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """One reproducible batch: the first batch of ``BatchSampler(split, ..., seed=seed)``."""
    return BatchSampler(split, batch_size, seq_len, seed=seed, device=device).next_batch()
