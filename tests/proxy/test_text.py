"""Real text: a split deterministic across processes, locally trained tokenizer, fixed-length
windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from star.proxy.config import TextSettings
from star.proxy.text import (
    CorpusError,
    build_text,
    encode_stream,
    load_corpus,
    tokenizer_cache_path,
    train_tokenizer,
    windows,
)
from tests.support.other_process import in_another_process

PROSE = ("The quick brown fox jumps over the lazy dog. Naïve café owners serve crème brûlée "
         "while 東京 tourists photograph it; def f(x): return x ** 2  # code, too\n")


def write_corpus(root: Path, n_files: int = 24) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        (root / f"doc{i:02d}.txt").write_text(f"Document {i}.\n" + PROSE * (3 + i % 5))
    return root


def test_split_is_deterministic_across_processes_and_by_document_id(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "corpus")
    settings = TextSettings(corpus=root, val_fraction=0.25)
    a = load_corpus(settings, 1 << 20)
    assert a == load_corpus(settings, 1 << 20)
    assert a.train and a.val and not set(a.train) & set(a.val)
    code = ("import json; from star.proxy.config import TextSettings;"
            " from star.proxy.text import load_corpus;"
            f" c = load_corpus(TextSettings(corpus={str(root)!r}, val_fraction=0.25), 1 << 20);"
            " print(json.dumps([c.train_digest(), c.val]))")
    assert in_another_process(code, hash_seed=1) == [a.train_digest(), list(a.val)]
    # Adding documents does not move existing ones between the splits.
    (root / "extra.txt").write_text("another document\n" * 50)
    b = load_corpus(settings, 1 << 20)
    assert set(a.train) <= set(b.train) and set(a.val) <= set(b.val)


def test_byte_budget_bounds_what_is_read(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "corpus")
    small = load_corpus(TextSettings(corpus=root, val_fraction=0.25), 4096)
    assert small.train_bytes + small.val_bytes <= 4096


def test_jsonl_text_field_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "c.jsonl"
    good.write_text("\n".join(json.dumps({"text": f"row {i} " + PROSE}) for i in range(40)))
    corpus = load_corpus(TextSettings(corpus=good, val_fraction=0.2), 1 << 20)
    assert len(corpus.train) + len(corpus.val) == 40
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"body": "no"}) + "\n")
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: no string 'text' field"):
        load_corpus(TextSettings(corpus=bad), 1 << 20)
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(TextSettings(corpus=tmp_path / "missing"), 1 << 20)


def test_stdlib_builtin_corpus_is_offline_and_split() -> None:
    settings = TextSettings(builtin="stdlib")
    corpus = load_corpus(settings, 96 * 1024)
    assert corpus.source.startswith("stdlib:")
    assert corpus.train and corpus.val
    assert 0 < corpus.val_bytes < corpus.train_bytes
    assert corpus == load_corpus(settings, 96 * 1024)


def test_default_corpus_is_the_bundled_english_sampled_across_works() -> None:
    corpus = load_corpus(TextSettings(), 256 * 1024)
    assert corpus.source.startswith("english:")
    assert 0 < corpus.val_bytes < corpus.train_bytes <= 256 * 1024
    text = "".join(corpus.train)
    assert " the " in text and "def " not in text  # prose, not code
    # hash order samples many works even under a small budget, not the first file only
    works = {"HAMLET" in t or "Hamlet" in t for t in corpus.train}
    assert len(corpus.train) >= 6 and works == {True, False}
    assert corpus == load_corpus(TextSettings(), 256 * 1024)


def test_gzipped_user_corpus_reads_like_plain_text(tmp_path: Path) -> None:
    import gzip

    root = write_corpus(tmp_path / "plain")
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    for f in root.iterdir():
        (zipped / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
    a = load_corpus(TextSettings(corpus=root, val_fraction=0.25), 1 << 20)
    b = load_corpus(TextSettings(corpus=zipped, val_fraction=0.25), 1 << 20)
    assert sorted(a.train + a.val) == sorted(b.train + b.val)


def test_tokenizer_trained_locally_round_trips_and_is_cached(tmp_path: Path) -> None:
    corpus = load_corpus(TextSettings(corpus=write_corpus(tmp_path / "c"), val_fraction=0.25),
                         1 << 20)
    tok, path = train_tokenizer(corpus, 300, tmp_path / "cache")
    assert path == tokenizer_cache_path(corpus, 300, tmp_path / "cache")
    assert path.is_file() and path.parent.name == "tokenizers"
    assert tok.get_vocab_size() == 300 and tok.token_to_id("<|endoftext|>") is not None
    for text in (PROSE, "unseen: Ω≈ç√∫ 🙂\tTabs\r\nand CRLF", ""):
        assert tok.decode(tok.encode(text).ids) == text
    assert len(tok.encode(PROSE).ids) < len(PROSE.encode()) / 1.5, "merges were learned"
    mtime = path.stat().st_mtime_ns
    again, path2 = train_tokenizer(corpus, 300, tmp_path / "cache")
    assert path2 == path and path.stat().st_mtime_ns == mtime
    assert again.encode(PROSE).ids == tok.encode(PROSE).ids
    other, _ = train_tokenizer(corpus, 300, tmp_path / "other-cache")  # trained anew
    assert other.encode(PROSE).ids == tok.encode(PROSE).ids, "training is deterministic"
    byte_tok, _ = train_tokenizer(corpus, 256, tmp_path / "cache")
    assert byte_tok.get_vocab_size() == 256 and byte_tok.decode(byte_tok.encode(PROSE).ids) == PROSE


def test_windows_have_the_right_length() -> None:
    stream = np.arange(100)
    w = windows(stream, 16)
    assert w.shape == (6, 17)
    np.testing.assert_array_equal(w[0], np.arange(17))
    assert (w[1:, 0] == w[:-1, -1]).all()  # consecutive windows share their boundary token
    assert windows(np.arange(10), 16).shape == (0, 17)


def test_build_text_gives_train_and_val_windows(tmp_path: Path, cache_dir: Path) -> None:
    settings = TextSettings(corpus=write_corpus(tmp_path / "c"), val_fraction=0.25, seq_len=32,
                            max_val_windows=5, cache_dir=cache_dir)
    data = build_text(settings, 300)
    assert data.train.shape[1] == data.val.shape[1] == 33 == data.seq_len + 1
    assert len(data.val) == 5 and len(data.train) > 5
    assert data.train.max() < 300 and data.vocab_size == 300
    assert data.val_bytes_per_token > 1.0
    assert data.tokenizer_path.is_relative_to(cache_dir)
    build_text.cache_clear()
    again = build_text(settings, 300)  # from the token cache
    np.testing.assert_array_equal(again.train, data.train)
    eos_stream = encode_stream(
        train_tokenizer(load_corpus(settings, settings.max_bytes), 300, cache_dir)[0],
        ("a", "b"))
    assert len(eos_stream) == 4  # a EOS b EOS
