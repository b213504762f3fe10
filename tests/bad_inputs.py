"""Helpers of the bad-input tables (tests/test_bad_inputs*.py): calls that must be refused, and the assertion."""

import json

import pytest
import torch
from PIL import Image

import sdviz
from sdviz import schedulers
from sdviz.attention_maps import AttentionMaps, AttentionOptions
from sdviz.validation import UsageError

P = "a red letter A on a blue background"
RGB = Image.new("RGB", (64, 64), (200, 30, 30))


def gen(**kw):
    """A generate() call with 2 steps unless the row says otherwise."""
    prompt = kw.pop("prompt", P)
    return lambda pipe: sdviz.generate(pipe, prompt, **{"steps": 2, **kw})


def sched(*args, **kw):
    """A schedulers.schedule() call."""
    return lambda pipe: schedulers.schedule(*args, **kw)


def maps():
    """Tiny AttentionMaps of the prompt "a red cat" (one step range, one layer group)."""
    tokens = ["<|startoftext|>", "a</w>", "red</w>", "cat</w>", "<|endoftext|>"]
    sums = torch.rand(1, 1, 1, len(tokens), 8, 8)
    return AttentionMaps(sums=sums, counts=torch.ones(1, 1), bins=[(0, 2)], groups=["all"], tokens=[tokens],
                         image_size=(64, 64), options=AttentionOptions(), factors=[None])  # fmt: skip


def full_maps():
    """AttentionMaps of a prompt that filled all 77 positions: its later words were cut off."""
    tokens = ["<|startoftext|>"] + ["cat</w>"] * 75 + ["<|endoftext|>"]
    sums = torch.rand(1, 1, 1, 77, 8, 8)
    return AttentionMaps(sums=sums, counts=torch.ones(1, 1), bins=[(0, 2)], groups=["all"], tokens=[tokens],
                         image_size=(64, 64), options=AttentionOptions(), factors=[None])  # fmt: skip


def folder(tmp_path_factory, index, components=()):
    """A folder with this model_index.json and these (empty) component folders."""
    d = tmp_path_factory.mktemp("model")
    (d / "model_index.json").write_text(index if isinstance(index, str) else json.dumps(index))
    for c in components:
        (d / c).mkdir()
    return d


SD_INDEX = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"], "safety_checker": [None, None]}  # fmt: skip

# (id, call, message it must contain); every call raises UsageError (a ValueError; its TypeError kind too)


def assert_refused(pipe, call, message):
    """Assert that `call(pipe)` raises a one-line UsageError containing `message`, the pipeline left as it was."""
    scheduler = pipe.scheduler
    with pytest.raises(UsageError) as e:
        call(pipe)
    assert message in str(e.value), str(e.value)
    assert "\n" not in str(e.value)
    assert pipe.scheduler is scheduler
