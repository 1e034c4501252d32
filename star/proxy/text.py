"""Real text for the proxy: a bounded corpus, a locally trained byte-level BPE, token windows.

Sources: a user-named text file, JSONL file (``text`` field per line) or directory of them
(optionally gzipped); by default the public-domain English corpus shipped in
``star/proxy/data/english`` (natural language: what a language model's quality is about), or,
with ``builtin: stdlib``, the installed CPython's standard library (.py sources plus the English
prose of ``pydoc_data/topics.py``, one document per topic). Nothing is downloaded.
Documents go to validation when a hash of their id (relative path, ``#chunk`` or ``::topic``)
falls below ``val_fraction``, so the split does not depend on what else is read.
Reading stops at the byte budget; built-in corpora are visited in hash order (of 32 KB chunks for
the English works) so that a small budget still samples the whole corpus.

The tokenizer is trained on the training split to the proxy vocabulary size and cached as JSON
under ``<cache_dir>/tokenizers/<sha256 of the training text, vocab size and recipe>.json``.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import math
import os
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from star.proxy.config import TextSettings

EOS = "<|endoftext|>"
CHUNK_BYTES = 32 * 1024  # a plain text file is split into documents of about this size
TOKENIZER_RECIPE = "bytelevel-bpe-v1"
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".py", ".jsonl", ".text")
ENGLISH_DIR = Path(__file__).resolve().parent / "data" / "english"
SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", ".git"}


class CorpusError(ValueError):
    """The corpus cannot give a train and a validation split (names the file or the reason)."""


@dataclass(frozen=True)
class Corpus:
    source: str
    train: tuple[str, ...]
    val: tuple[str, ...]

    @property
    def train_bytes(self) -> int:
        return sum(len(t.encode()) for t in self.train)

    @property
    def val_bytes(self) -> int:
        return sum(len(t.encode()) for t in self.val)

    def train_digest(self) -> str:
        h = hashlib.sha256()
        for text in self.train:
            h.update(hashlib.sha256(text.encode()).digest())
        return h.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("STAR_CACHE_DIR", Path.home() / ".cache" / "star-lab"))


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _is_val(doc_id: str, fraction: float) -> bool:
    digest = hashlib.sha256(doc_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _order(doc_id: str) -> bytes:
    return hashlib.sha256(b"order:" + doc_id.encode()).digest()


Doc = tuple[str, Callable[[], str | None]]


def _read_text(path: Path) -> str | None:
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return None if b"\x00" in data else data.decode("utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # not text: skipped


def _pydoc_topics(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "topics" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            if isinstance(value, dict):
                return {str(k): str(v) for k, v in value.items()}
    return {}


def _stdlib_docs(root: Path) -> list[Doc]:
    docs: list[Doc] = []
    topics = root / "pydoc_data" / "topics.py"
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.endswith(".py") and path != topics:
                rel = path.relative_to(root).as_posix()
                docs.append((rel, partial(_read_text, path)))
    if topics.is_file():
        for key, text in _pydoc_topics(topics).items():
            docs.append((f"pydoc_data/topics.py::{key}", partial(str, text)))
    docs.sort(key=lambda d: _order(d[0]))
    return docs


def _english_docs(root: Path = ENGLISH_DIR) -> list[tuple[str, str]]:
    """The bundled English works as 32 KB chunks, in hash order of their ids."""
    files = sorted(root.glob("*.txt.gz"))
    if not files:
        raise CorpusError(
            f"text.builtin: english: no *.txt.gz under {root} (the package was installed "
            "without its data files: reinstall it, or set text.corpus)"
        )
    docs = [
        (f"{path.name.removesuffix('.txt.gz')}#{i}", chunk)
        for path in files
        for i, chunk in enumerate(_chunks(_read_text(path) or ""))
    ]
    docs.sort(key=lambda d: _order(d[0]))
    return docs


def _chunks(text: str) -> Iterator[str]:
    """Split at line ends into pieces of about CHUNK_BYTES characters."""
    start = 0
    while start < len(text):
        end = text.find("\n", start + CHUNK_BYTES)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _file_docs(path: Path, rel: str) -> Iterator[tuple[str, str]]:
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusError(
                        f"text.corpus: {path}:{line_no}: not JSON ({exc.msg})"
                    ) from None
                text = row.get("text") if isinstance(row, dict) else None
                if not isinstance(text, str):
                    raise CorpusError(f"text.corpus: {path}:{line_no}: no string 'text' field")
                yield f"{rel}:{line_no}", text
        return
    text = _read_text(path)
    if text is None:
        return
    for i, chunk in enumerate(_chunks(text)):
        yield f"{rel}#{i}", chunk


def _user_docs(root: Path) -> Iterator[tuple[str, str]]:
    if root.is_file():
        yield from _file_docs(root, root.name)
        return
    if not root.is_dir():
        raise CorpusError(f"text.corpus: {root} does not exist")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.removesuffix(".gz").endswith(TEXT_SUFFIXES):
                path = Path(dirpath) / name
                yield from _file_docs(path, path.relative_to(root).as_posix())


def load_corpus(settings: TextSettings, max_bytes: int) -> Corpus:
    """Read up to ``max_bytes`` (UTF-8) of the corpus, split into train and validation."""
    val_budget = max(1, int(max_bytes * settings.val_fraction))
    budget = {False: max_bytes - val_budget, True: val_budget}
    parts: dict[bool, list[str]] = {False: [], True: []}
    stream: Iterator[tuple[str, str | None]]
    if settings.corpus is None and settings.builtin == "english":
        source = "english:star/proxy/data/english"
        stream = iter(_english_docs())
    elif settings.corpus is None:
        source = f"stdlib:{stdlib_dir()}"
        stream = (
            (doc_id, read()) for doc_id, read in _stdlib_docs(stdlib_dir())
        )
    else:
        source = str(Path(settings.corpus).expanduser().resolve())
        stream = _user_docs(Path(settings.corpus).expanduser())
    for doc_id, text in stream:
        if not text:
            continue
        split = _is_val(doc_id, settings.val_fraction)
        if budget[split] <= 0:
            if budget[not split] <= 0:
                break
            continue
        data = text.encode("utf-8")[: budget[split]]
        budget[split] -= len(data)
        parts[split].append(data.decode("utf-8", errors="ignore"))
    if not parts[False] or not parts[True]:
        which = "training" if not parts[False] else "validation"
        raise CorpusError(
            f"text.corpus: {source} gives an empty {which} split (too little text "
            f"or too few documents for val_fraction {settings.val_fraction})"
        )
    return Corpus(source, tuple(parts[False]), tuple(parts[True]))


def tokenizer_cache_path(corpus: Corpus, vocab_size: int, cache_dir: Path) -> Path:
    key = hashlib.sha256(
        json.dumps([TOKENIZER_RECIPE, vocab_size, corpus.train_digest()]).encode()
    ).hexdigest()
    return cache_dir / "tokenizers" / f"{key[:32]}.json"


def train_tokenizer(corpus: Corpus, vocab_size: int, cache_dir: Path | None = None):  # noqa: ANN201
    """Byte-level BPE with ``vocab_size`` tokens (one of them EOS when vocab_size > 256).

    Returns ``(tokenizers.Tokenizer, path of its cached JSON)``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 256:
        raise CorpusError(f"vocab_size: byte-level BPE needs >= 256 tokens, got {vocab_size}")
    path = tokenizer_cache_path(corpus, vocab_size, cache_dir or default_cache_dir())
    if path.is_file():
        return Tokenizer.from_file(str(path)), path
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[EOS] if vocab_size > 256 else [],
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus.train), trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tok.save(str(tmp))
    os.replace(tmp, path)  # atomic: parallel workers may train the same tokenizer
    return tok, path


def encode_stream(tokenizer, texts: tuple[str, ...]) -> np.ndarray:  # noqa: ANN001
    """Token ids of ``texts``, documents separated by EOS (or a blank line without one)."""
    eos = tokenizer.token_to_id(EOS)
    sep = [eos] if eos is not None else tokenizer.encode("\n\n").ids
    ids: list[int] = []
    for enc in tokenizer.encode_batch(list(texts)):
        ids += enc.ids
        ids += sep
    return np.asarray(ids, dtype=np.int64)


def windows(stream: np.ndarray, seq_len: int) -> np.ndarray:
    """Non-overlapping windows of ``seq_len + 1`` tokens (inputs ``w[:-1]``, targets ``w[1:]``),
    consecutive windows sharing their boundary token. Shape (N, seq_len + 1)."""
    n = (len(stream) - 1) // seq_len
    if n <= 0:
        return np.zeros((0, seq_len + 1), dtype=np.int64)
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return stream[idx]


def _encoded(
    tokenizer,
    tokenizer_path: Path,
    corpus: Corpus,  # noqa: ANN001
) -> tuple[np.ndarray, np.ndarray]:
    """Token streams of both splits, cached next to the tokenizer (encoding is the slow step)."""
    h = hashlib.sha256(tokenizer_path.name.encode())
    for text in corpus.val:
        h.update(hashlib.sha256(text.encode()).digest())
    path = tokenizer_path.parent.parent / "tokens" / f"{h.hexdigest()[:32]}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return cached["train"], cached["val"]
    train, val = encode_stream(tokenizer, corpus.train), encode_stream(tokenizer, corpus.val)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    dtype = np.uint16 if tokenizer.get_vocab_size() <= 2**16 else np.int64
    np.savez(tmp, train=train.astype(dtype), val=val.astype(dtype))
    os.replace(tmp, path)
    return train, val


@dataclass(frozen=True)
class TextData:
    """Token windows of the training and validation splits and the tokenizer they came from."""

    source: str
    seq_len: int
    vocab_size: int
    train: np.ndarray  # (N, seq_len + 1)
    val: np.ndarray  # (M, seq_len + 1), at most max_val_windows, spread over the split
    val_bytes_per_token: float
    tokenizer_path: Path
    train_bytes: int
    val_bytes: int


def scaled_text(settings: TextSettings, scale: float) -> tuple[int, int]:
    """(max_bytes, seq_len) at ``scale`` (bytes linearly, window with sqrt(scale))."""
    max_bytes = max(64 * 1024, int(settings.max_bytes * scale))
    seq = max(32, int(round(settings.seq_len * math.sqrt(scale) / 8)) * 8)
    return min(max_bytes, settings.max_bytes), min(seq, settings.seq_len)


@lru_cache(maxsize=4)
def build_text(settings: TextSettings, vocab_size: int, scale: float = 1.0) -> TextData:
    """Corpus -> tokenizer -> windows; cached per process."""
    max_bytes, seq_len = scaled_text(settings, scale)
    corpus = load_corpus(settings, max_bytes)
    tok, path = train_tokenizer(corpus, vocab_size, settings.cache_dir)
    train_stream, val_stream = _encoded(tok, path, corpus)
    train = windows(train_stream.astype(np.int64), seq_len)
    val = windows(val_stream.astype(np.int64), seq_len)
    if len(train) == 0 or len(val) == 0:
        raise CorpusError(
            f"text.corpus: {corpus.source}: a split has fewer than "
            f"{seq_len + 1} tokens (raise text.max_bytes or lower text.seq_len)"
        )
    if len(val) > settings.max_val_windows:
        val = val[np.linspace(0, len(val) - 1, settings.max_val_windows).round().astype(int)]
    for a in (train, val):
        a.flags.writeable = False
    return TextData(
        source=corpus.source,
        seq_len=seq_len,
        vocab_size=tok.get_vocab_size(),
        train=train,
        val=val,
        val_bytes_per_token=corpus.val_bytes / max(1, len(val_stream)),
        tokenizer_path=path,
        train_bytes=corpus.train_bytes,
        val_bytes=corpus.val_bytes,
    )
