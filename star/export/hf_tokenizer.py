"""The GGUF's synthetic tokenizer as a Hugging Face fast tokenizer (tokenizer.json), built offline.

Same vocabulary, same ids, same text -> ids as llama.cpp's SentencePiece ("llama") tokenizer of
``star.export.tokenizer``: the token list comes from there; every space becomes the U+2581 piece
and one is prepended (SentencePiece's space prefix); a BPE model without merges then finds only
U+2581 as a piece and byte-falls-back for everything else (``<0xNN>``); ``<s>`` is prepended as
llama.cpp's ``add_bos`` does. Decoding undoes each step. The filler tokens are unreachable from
text in both. A vocabulary under 259 tokens has no text tokenizer (the GGUF gets "none"), so none
is shipped.
"""

from __future__ import annotations

import json
from typing import Any

from star.export import names as N
from star.export.tokenizer import (
    BOS_ID,
    EOS_ID,
    SPACE_PIECE,
    SPM_SPECIALS,
    UNK_ID,
    synthetic_tokenizer,
)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def tokenizer_kind(vocab_size: int) -> str:
    """ "spm-bytes" (text in and out) or "none" (no tokenizer files: token ids only)."""
    return "spm-bytes" if synthetic_tokenizer(vocab_size).handles_text else "none"


def _tokenizer_json(vocab_size: int) -> str:
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE

    tokens = synthetic_tokenizer(vocab_size).metadata()[N.K_TOK_LIST][0]
    assert isinstance(tokens, list) and len(tokens) == vocab_size
    unk, bos, eos = SPM_SPECIALS
    tok = Tokenizer(
        BPE(
            vocab={t: i for i, t in enumerate(tokens)}, merges=[], unk_token=unk, byte_fallback=True
        )
    )
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend(SPACE_PIECE), normalizers.Replace(" ", SPACE_PIECE)]
    )
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace(SPACE_PIECE, " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, BOS_ID)]
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (unk, bos, eos)])
    assert tok.token_to_id(unk) == UNK_ID and tok.token_to_id(eos) == EOS_ID
    return str(tok.to_str())


def tokenizer_files(vocab_size: int, context_length: int) -> dict[str, str]:
    """File name -> text of the tokenizer files; empty when the vocabulary has no text form."""
    if tokenizer_kind(vocab_size) == "none":
        return {}
    unk, bos, eos = SPM_SPECIALS
    special = {"bos_token": bos, "eos_token": eos, "unk_token": unk, "pad_token": unk}
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "add_bos_token": True,
        "add_eos_token": False,
        "model_max_length": context_length,
        "clean_up_tokenization_spaces": False,
    }
    return {
        "tokenizer.json": _tokenizer_json(vocab_size),
        "tokenizer_config.json": json.dumps(config, indent=2) + "\n",
        "special_tokens_map.json": json.dumps(special, indent=2) + "\n",
    }
