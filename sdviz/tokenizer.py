"""The real CLIP BPE tokenizer of Stable Diffusion 1.x, built offline from the bundled vocabulary."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from transformers import CLIPTokenizer

from sdviz.quiet import quiet
from sdviz.tokens import BOS, EOS, TokenInfo

MODEL_MAX_LENGTH = 77
_N_MERGES = 49152 - 256 - 2
_FILES_VERSION = 1  # bump when write_tokenizer_files writes something else: the cached folder's name changes


def bytes_to_unicode() -> dict[int, str]:
    """Map every byte to a printable unicode character, as CLIP's BPE does."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def vocabulary() -> tuple[dict[str, int], list[str]]:
    """Return CLIP's vocabulary (49,408 entries) and its BPE merges, read from the bundled file.

    Returns:
        `(vocab, merges)`: token -> id, and the merge lines in rank order ("a b").
    """
    merges = gzip.decompress(_bundled_vocabulary()).decode("utf-8").split("\n")[1 : _N_MERGES + 1]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def _bundled_vocabulary() -> bytes:
    return resources.files("sdviz").joinpath("data/bpe_simple_vocab_16e6.txt.gz").read_bytes()


def write_tokenizer_files(folder: str | os.PathLike) -> Path:
    """Write `vocab.json`, `merges.txt` and the configs of SD 1.x's tokenizer into `folder`.

    Args:
        folder: target folder, created if missing (a diffusers pipeline's `tokenizer/`).

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = vocabulary()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
    return folder


@functools.lru_cache(maxsize=1)
def _cached_folder() -> str:
    # named by the content it is built from, so a changed vocabulary or file layout never reads a stale folder
    digest = hashlib.sha256(_bundled_vocabulary() + f"files:{_FILES_VERSION}".encode()).hexdigest()[:16]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    folder = Path(tempfile.gettempdir()) / f"sdviz-clip-tokenizer-{uid}-{digest}"
    if not folder.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix="sdviz-tok-"))
        try:
            write_tokenizer_files(tmp)
            try:
                tmp.replace(folder)  # atomic: the folder is complete or absent
            except OSError:  # another process got there first
                pass
        finally:  # left only when that happened or writing failed
            shutil.rmtree(tmp, ignore_errors=True)
    return str(folder)


def load_tokenizer(pad_token: str = EOS) -> CLIPTokenizer:
    """Return SD 1.x's CLIP tokenizer (`model_max_length=77`), built from the bundled vocabulary.

    Args:
        pad_token: the padding token: SD 1.x pads with the end token; SD 2.x and SDXL's second tokenizer
            (OpenCLIP's convention) pad with "!", id 0.

    Returns:
        A transformers `CLIPTokenizer` that gives the same ids as Stable Diffusion 1.x's (2.x's with "!").
    """
    if pad_token == EOS:
        return CLIPTokenizer.from_pretrained(_cached_folder(), model_max_length=MODEL_MAX_LENGTH)
    return CLIPTokenizer.from_pretrained(_cached_folder(), model_max_length=MODEL_MAX_LENGTH, pad_token=pad_token)


def token_info(prompt: str, tokenizer: CLIPTokenizer | None = None) -> TokenInfo:
    """Tokenize `prompt` as a Stable Diffusion pipeline does and record what CLIP sees.

    Args:
        prompt: the text.
        tokenizer: the pipeline's tokenizer; the bundled SD 1.x tokenizer when None.

    Returns:
        A `TokenInfo` with the padded ids, the attention mask, the token strings and the truncated tail.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    length = tok.model_max_length
    if length is None or length > 10_000:
        raise ValueError("the tokenizer has no model_max_length; build it with model_max_length=77")
    padded = tok(prompt, padding="max_length", max_length=length, truncation=True)
    with quiet("transformers"):  # its "longer than 77" warning: the truncated tail below says it exactly
        full = tok(prompt, truncation=False)["input_ids"]
    body = full[1:-1]
    kept = length - 2
    tail = body[kept:]
    ids = list(padded["input_ids"])
    return TokenInfo(
        prompt=prompt,
        input_ids=ids,
        attention_mask=list(padded["attention_mask"]),
        tokens=tok.convert_ids_to_tokens(ids),
        truncated_ids=list(tail),
        truncated=tok.convert_ids_to_tokens(list(tail)),
    )
