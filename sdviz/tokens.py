"""What CLIP sees of a prompt: `TokenInfo`, and the grouping of BPE tokens into words (pure data)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# CLIP's pre-tokenizer: letters, single digits and runs of other symbols are words of their own
_CLIP_WORDS = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+")


def words_of(tokens: list[str]) -> list[tuple[str, list[int]]]:
    """Group BPE tokens into words, `[(word, [positions]), ...]`, skipping start, end and padding tokens."""
    out: list[tuple[str, list[int]]] = []
    pieces: list[str] = []
    positions: list[int] = []
    for pos, tok in enumerate(tokens):
        if tok == BOS:
            continue
        if tok == EOS:
            break
        pieces.append(tok.removesuffix("</w>"))
        positions.append(pos)
        if tok.endswith("</w>"):
            out.append(("".join(pieces), positions))
            pieces, positions = [], []
    if pieces:
        out.append(("".join(pieces), positions))
    return out


def split_words(text: str) -> list[str]:
    """Split text into the lower-cased words CLIP's pre-tokenizer makes of it ("cat," -> "cat", ",")."""
    return _CLIP_WORDS.findall(text.lower())


def find_phrase(tokens: list[str], phrase: str) -> list[list[int]]:
    """Return the token positions of every occurrence of `phrase` (one or more words, case-insensitive)."""
    wanted = split_words(phrase)
    words = words_of(tokens)
    names = [w.lower() for w, _ in words]
    n = len(wanted)
    if n == 0:
        return []
    return [[p for _, ps in words[i : i + n] for p in ps] for i in range(len(words) - n + 1) if names[i : i + n] == wanted]


@dataclass
class TokenInfo:
    """What CLIP sees of one prompt.

    Attributes:
        prompt: the text as given.
        input_ids: the padded ids (length `model_max_length`, 77 for SD).
        attention_mask: 1 for the start token, the prompt's tokens and the end token; 0 for padding.
        tokens: the BPE token string of every position (`"cat</w>"`).
        truncated_ids: ids cut off because the prompt was too long.
        truncated: the token strings cut off.
    """

    prompt: str
    input_ids: list[int]
    attention_mask: list[int]
    tokens: list[str]
    truncated_ids: list[int] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        cut = f", truncated={self.truncated}" if self.truncated else ""
        return f"TokenInfo({self.prompt!r}, tokens={self.tokens[: self.length]}{cut})"

    @property
    def length(self) -> int:
        """Number of positions that are not padding (start and end tokens included)."""
        return int(sum(self.attention_mask))

    @property
    def unique(self) -> list[tuple[str, int]]:
        """The distinct tokens of the unpadded prompt with their ids, in order of first appearance."""
        seen: dict[int, str] = {}
        for tok, i in zip(self.tokens[: self.length], self.input_ids[: self.length], strict=True):
            seen.setdefault(i, tok)
        return [(t, i) for i, t in seen.items()]

    def words(self) -> list[tuple[str, list[int]]]:
        """Group the prompt's BPE tokens into words: `[(word, [positions]), ...]`, start/end tokens excluded."""
        return words_of(self.tokens[: self.length])
