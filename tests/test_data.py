"""tutorial_lib.data: offline tokenizer, corpus, token cache, splits and the batch sampler."""
import json
import socket

import numpy as np
import pytest
import torch

from tutorial_lib import data


@pytest.fixture(scope="session")
def tokens():
    return data.load_tokens()  # tokenizes the corpus at most once per session (then disk cache)


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Any attempt to open a connection fails, and tiktoken's own cache is an empty folder."""
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))
    data.get_tokenizer.cache_clear()
    yield
    data.get_tokenizer.cache_clear()


# ---- tokenizer -----------------------------------------------------------------------------
def test_tokenizer_works_offline(no_network):
    with pytest.raises(OSError):  # the guard really is in place
        socket.create_connection(("127.0.0.1", 9))
    enc = data.get_tokenizer()
    assert enc.name == "gpt2"
    assert enc.n_vocab == 50257
    assert enc.encode("Hello world") == [15496, 995]


def test_tokenizer_is_cached():
    assert data.get_tokenizer() is data.get_tokenizer()


def test_special_token():
    enc = data.get_tokenizer()
    assert enc.eot_token == data.EOT_TOKEN == 50256
    assert enc.encode("<|endoftext|>", allowed_special="all") == [50256]
    assert enc.decode([50256]) == "<|endoftext|>"


def test_pattern_matches_tiktoken():
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    assert data.GPT2_PAT_STR == openai_public.r50k_pat_str


def test_tokenizer_hash_mismatch_is_a_clear_error(tmp_path):
    bad = tmp_path / "r50k_base.tiktoken"
    bad.write_bytes(data.TOKENIZER_FILE.read_bytes()[:-10])
    with pytest.raises(RuntimeError, match="sha256"):
        data.load_encoding(bad)


def test_round_trip_on_corpus_slice():
    enc = data.get_tokenizer()
    text = data.load_corpus_text()[100_000:150_000]
    assert enc.decode(enc.encode_ordinary(text)) == text


def test_bundled_files_match_provenance():
    assert data.sha256_file(data.TOKENIZER_FILE) == data.TOKENIZER_SHA256
    assert data.sha256_file(data.CORPUS_FILE) == data.CORPUS_SHA256
    assert (data.ASSETS_DIR / "PROVENANCE.md").is_file()


# ---- corpus, cache, splits -----------------------------------------------------------------
def test_corpus_text():
    text = data.load_corpus_text()
    assert len(text) == 5_057_282
    assert text.isascii()


def test_tokens(tokens):
    assert tokens.dtype == np.uint16 and tokens.ndim == 1
    assert len(tokens) > 1_000_000
    assert int(tokens.max()) < 50257
    assert not tokens.flags.writeable  # shared across callers


def test_token_cache_is_written_once_and_reused(tmp_path, tokens, monkeypatch):
    path = data.token_cache_path(tmp_path)
    assert data.CORPUS_SHA256 in path.name
    first = data.load_tokens(tmp_path)
    assert path.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic: no leftovers
    np.testing.assert_array_equal(first, tokens)

    data._load_tokens.cache_clear()  # a new process: the disk cache must answer, no tokenizing
    monkeypatch.setattr(data, "tokenize_corpus", lambda *a, **k: pytest.fail("re-tokenized"))
    np.testing.assert_array_equal(data.load_tokens(tmp_path), tokens)


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    assert data.cache_dir() == tmp_path
    assert data.token_cache_path().parent == tmp_path


def _npz(path, tokens, meta):
    with open(path, "wb") as f:
        np.savez(f, tokens=tokens, meta=np.array(json.dumps(meta)))


def _npy(path, tokens):
    with open(path, "wb") as f:
        np.save(f, tokens)


def _one_changed(tokens):
    out = tokens.copy()
    out[5] = (int(out[5]) + 1) % 50257
    return out


def _valid_meta(tokens):
    return data._token_meta(tokens, data.CORPUS_SHA256)


# every way a cache file can be wrong: (name, writes the bad file, words the warning must hold)
BAD_CACHES = [
    ("zero bytes", lambda p, t: p.write_bytes(b""), "EOFError"),
    ("not numpy", lambda p, t: p.write_bytes(b"not a numpy file"), "unreadable"),
    ("truncated", lambda p, t: (data.write_token_cache(p, t, data.CORPUS_SHA256),
                                p.write_bytes(p.read_bytes()[:100_000])), "unreadable"),
    ("bare .npy of 1000 valid tokens", lambda p, t: _npy(p, t[:1000]), "bare ndarray"),
    ("ids overwritten with 65535", lambda p, t: _npz(p, np.full_like(t, 65535), _valid_meta(t)),
     "holds id 65535"),
    ("1000 tokens, meta of the corpus", lambda p, t: _npz(p, t[:1000], _valid_meta(t)), "n_tokens"),
    ("one id changed", lambda p, t: _npz(p, _one_changed(t), _valid_meta(t)), "tokens_sha256"),
    ("another corpus", lambda p, t: _npz(p, t, {**_valid_meta(t), "corpus_sha256": "0" * 64}),
     "another corpus"),
    ("int64 tokens", lambda p, t: _npz(p, t.astype(np.int64), _valid_meta(t)), "int64"),
    ("v1 format", lambda p, t: _npz(p, t, {**_valid_meta(t), "format": "v1"}), "not a v2 token cache"),
]


@pytest.mark.parametrize("name, corrupt, why", BAD_CACHES, ids=[b[0] for b in BAD_CACHES])
def test_bad_cache_is_never_used_and_is_rebuilt(tmp_path, tokens, name, corrupt, why):
    """Before: a zero-byte cache raised EOFError on every run, and a valid .npy of 1,000 tokens or
    one with ids >= 50,257 was trained on. Now each is named in a warning and tokenized again."""
    path = data.token_cache_path(tmp_path)
    corrupt(path, np.asarray(tokens))
    assert data.read_token_cache(path, data.CORPUS_SHA256)[0] is None
    data._load_tokens.cache_clear()
    with pytest.warns(RuntimeWarning, match=why):
        np.testing.assert_array_equal(data.load_tokens(tmp_path), tokens)
    again, problem = data.read_token_cache(path, data.CORPUS_SHA256)  # rewritten, valid
    assert problem == "" and np.array_equal(again, tokens)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left
    data._load_tokens.cache_clear()


def test_changed_corpus_gets_its_own_cache_file(tmp_path):
    other = tmp_path / "other.txt.gz"
    import gzip
    with gzip.open(other, "wb") as f:
        f.write(b"To be, or not to be")
    assert data.token_cache_path(tmp_path, other) != data.token_cache_path(tmp_path)


def test_split_sizes(tokens):
    train, val = data.get_split("train"), data.get_split("val")
    assert len(train) + len(val) == len(tokens)
    assert len(val) == len(tokens) // 10  # floor(10%), taken from the end
    np.testing.assert_array_equal(np.concatenate([train, val]), tokens)
    assert data.split_sizes(1000) == (900, 100)
    assert data.split_sizes(1009) == (909, 100)


def test_bad_split_name():
    with pytest.raises(ValueError, match="split='test'"):
        data.get_split("test")


# ---- batches -------------------------------------------------------------------------------
def test_batch_shapes_and_shift(tokens):
    s = data.BatchSampler("train", batch_size=3, seq_len=16, seed=0)
    x, y = s.next_batch()
    assert x.shape == y.shape == (3, 16)
    assert x.dtype == y.dtype == torch.int64
    assert x.is_contiguous() and y.is_contiguous()
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one


def test_batches_are_contiguous_windows():
    toks = np.arange(5000, dtype=np.uint16)  # token i sits at position i: rows must count up by 1
    x, y = data.BatchSampler(toks, batch_size=8, seq_len=64, seed=3).next_batch()
    steps = torch.arange(64)
    assert torch.equal(x, x[:, :1] + steps)
    assert torch.equal(y, x + 1)
    assert int(x.min()) >= 0 and int(y.max()) <= 4999


def test_sampler_is_deterministic():
    a = data.BatchSampler("train", 4, 32, seed=123)
    b = data.BatchSampler("train", 4, 32, seed=123)
    for _ in range(3):
        xa, ya = a.next_batch()
        xb, yb = b.next_batch()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    a.reset()
    assert torch.equal(a.next_batch()[0], data.get_batch("train", 4, 32, seed=123)[0])


def test_different_seeds_differ():
    xa, _ = data.get_batch("train", 4, 32, seed=1)
    xb, _ = data.get_batch("train", 4, 32, seed=2)
    assert not torch.equal(xa, xb)


def test_consecutive_batches_differ():
    s = data.BatchSampler("val", 4, 32, seed=0)
    assert not torch.equal(s.next_batch()[0], s.next_batch()[0])


def test_rank_shards_are_disjoint_and_add_up():
    world = 4
    full = data.BatchSampler("train", 2 * world, 8, seed=7)
    ranks = [data.BatchSampler("train", 2, 8, seed=7, rank=r, world_size=world) for r in range(world)]
    for _ in range(2):
        xs = [s.next_batch()[0] for s in ranks]
        assert torch.equal(torch.cat(xs), full.next_batch()[0])
        assert not torch.equal(xs[0], xs[1])


def test_custom_token_array():
    toks = np.arange(10, dtype=np.uint16)
    x, y = data.BatchSampler(toks, batch_size=5, seq_len=9, seed=0).next_batch()
    assert torch.equal(x, torch.arange(9).expand(5, 9))  # only one window fits
    assert torch.equal(y, torch.arange(1, 10).expand(5, 9))


@pytest.mark.parametrize("kwargs, field", [
    (dict(batch_size=0), "batch_size=0"),
    (dict(batch_size=2.5), "batch_size=2.5"),
    (dict(seq_len=0), "seq_len=0"),
    (dict(seq_len=-3), "seq_len=-3"),
    (dict(seed=-1), "seed=-1"),
    (dict(world_size=0), "world_size=0"),
    (dict(rank=2, world_size=2), "rank=2"),
])
def test_bad_sampler_inputs(kwargs, field):
    with pytest.raises(ValueError, match=field):
        data.BatchSampler("train", **{"batch_size": 2, "seq_len": 8, **kwargs})


def test_seq_len_longer_than_split():
    n_val = len(data.get_split("val"))
    data.BatchSampler("val", 1, n_val - 1)  # exactly fits: seq_len + 1 == n_val
    with pytest.raises(ValueError, match=f"seq_len={n_val}"):
        data.BatchSampler("val", 1, n_val)
    with pytest.raises(ValueError, match="seq_len=10"):
        data.BatchSampler(np.arange(10, dtype=np.uint16), 1, 10)


def test_bad_split_in_sampler():
    with pytest.raises(ValueError, match="split='validation'"):
        data.get_batch("validation", 2, 8)
