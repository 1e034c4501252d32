"""A synthetic tokenizer of the genome's vocabulary size that llama.cpp accepts.

The searched models have no trained tokenizer, but llama.cpp needs one to load a file, and text
tools (llama-completion, perplexity) need one that can encode any text. The SentencePiece
(``"llama"``) form with ``<unk>``, ``<s>``, ``</s>`` and the 256 byte tokens ``<0x00>``..``<0xFF>``
encodes every UTF-8 string by byte fallback; unique filler tokens pad it to the vocabulary size.
Vocabularies under 259 tokens cannot hold that, and get ``"none"`` (token ids only: llama-bench and
logits work, any text aborts).
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import GGUFValueType, TokenType

from star.export import names as N

SPM_SPECIALS = ("<unk>", "<s>", "</s>")
SPACE_PIECE = "\u2581"
MIN_SPM_VOCAB = len(SPM_SPECIALS) + 256
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2


@dataclass(frozen=True)
class SyntheticTokenizer:
    model: str  # "llama" (SentencePiece with byte fallback) or "none"
    vocab_size: int
    handles_text: bool

    def metadata(self) -> dict[str, tuple[object, GGUFValueType]]:
        """Tokenizer keys -> (value, GGUF type)."""
        meta: dict[str, tuple[object, GGUFValueType]] = {
            N.K_TOK_MODEL: (self.model, GGUFValueType.STRING)
        }
        if self.model == "none":
            return meta
        tokens = list(SPM_SPECIALS) + [f"<0x{b:02X}>" for b in range(256)]
        # The SentencePiece space marker as a piece of its own (when there is room), so that
        # spaces detokenize back to spaces instead of to the bytes of U+2581.
        tokens += [SPACE_PIECE][: self.vocab_size - len(tokens)]
        n_fill = self.vocab_size - len(tokens)
        tokens += [f"<star_fill_{i}>" for i in range(n_fill)]
        types = [int(TokenType.UNKNOWN), int(TokenType.CONTROL), int(TokenType.CONTROL)]
        types += [int(TokenType.BYTE)] * 256
        types += [int(TokenType.NORMAL)] * (len(tokens) - len(types))
        # fillers never match real text better than bytes: lowest scores
        scores = [0.0] * (self.vocab_size - n_fill) + [-1000.0 - i for i in range(n_fill)]
        meta.update(
            {
                N.K_TOK_LIST: (tokens, GGUFValueType.ARRAY),
                N.K_TOK_TYPES: (types, GGUFValueType.ARRAY),
                N.K_TOK_SCORES: (scores, GGUFValueType.ARRAY),
                N.K_TOK_UNK: (UNK_ID, GGUFValueType.UINT32),
                N.K_TOK_BOS: (BOS_ID, GGUFValueType.UINT32),
                N.K_TOK_EOS: (EOS_ID, GGUFValueType.UINT32),
                N.K_TOK_ADD_BOS: (True, GGUFValueType.BOOL),
                N.K_TOK_ADD_EOS: (False, GGUFValueType.BOOL),
            }
        )
        return meta


def synthetic_tokenizer(vocab_size: int) -> SyntheticTokenizer:
    if vocab_size >= MIN_SPM_VOCAB:
        return SyntheticTokenizer("llama", vocab_size, handles_text=True)
    return SyntheticTokenizer("none", vocab_size, handles_text=False)
