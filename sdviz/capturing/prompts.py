"""What CLIP saw of a run's prompts, recorded once: exact when the prompt text is known, else from the ids."""

from __future__ import annotations

from typing import Any

from sdviz.tokenizer import token_info
from sdviz.tokens import TokenInfo
from sdviz.trace import Trace

CLIP_EOS_ID = 49407


def tokens_from_ids(ids: list[int], tokenizer: Any) -> TokenInfo:
    """Rebuild a TokenInfo from the ids the text encoder saw (the truncated tail is unknown here)."""
    eos = tokenizer.eos_token_id if tokenizer is not None else CLIP_EOS_ID
    end = ids.index(eos) + 1 if eos in ids else len(ids)
    if tokenizer is None:
        tokens, prompt = [str(i) for i in ids], ""
    else:
        tokens = tokenizer.convert_ids_to_tokens(ids)
        prompt = tokenizer.decode(ids[:end], skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return TokenInfo(prompt=prompt.strip(), input_ids=list(ids), attention_mask=[1] * end + [0] * (len(ids) - end),
                     tokens=tokens)  # fmt: skip


def record_prompts(
    trace: Trace,
    calls: list[list[list[int]]],
    tokenizer: Any,
    prompt: str | list[str] | None = None,
    negative_prompt: str | list[str] | None = None,
) -> None:
    """Write the trace's prompt, prompts, tokens, negative prompt and negative tokens.

    Args:
        trace: the trace to fill in.
        calls: the ids of each text-encoder call, one row per prompt: the prompts, then (under classifier-free
            guidance) the negative prompts.
        tokenizer: the pipeline's tokenizer.
        prompt: the prompt text when known (`generate` knows it): exact text and truncated tail.
        negative_prompt: the negative prompt text when known.
    """
    if prompt is not None:
        trace.prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        trace.tokens = token_info(trace.prompts[0], tokenizer)
    elif calls:
        infos = [tokens_from_ids(row, tokenizer) for row in calls[0]]
        trace.prompts, trace.tokens = [i.prompt for i in infos], infos[0]
    trace.prompt = trace.prompts[0] if trace.prompts else ""
    if prompt is not None and (negative_prompt is not None or len(calls) > 1):
        neg = negative_prompt if isinstance(negative_prompt, str) or negative_prompt is None else negative_prompt[0]
        trace.negative_prompt = neg
        trace.negative_tokens = token_info(neg or "", tokenizer)
    elif len(calls) > 1:
        trace.negative_tokens = tokens_from_ids(calls[1][0], tokenizer)


def second_tokens(calls: list[list[list[int]]], tokenizer: Any, prompt: str | list[str] | None) -> TokenInfo | None:
    """Return what SDXL's second text encoder saw of the prompt: exact (with the truncated tail) when the
    prompt text is known and gives the ids it saw, else rebuilt from those ids."""
    seen = calls[0][0] if calls else None
    if prompt is not None:
        info = token_info(prompt if isinstance(prompt, str) else prompt[0], tokenizer)
        if seen is None or info.input_ids == seen:
            return info
    return tokens_from_ids(seen, tokenizer) if seen is not None else None
