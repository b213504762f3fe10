"""Bad arguments of generate() (issue 15): each is refused before the pipeline runs, with a message that names
the valid range or the fix. The other API rows are in test_bad_inputs_api.py, the CLI's in test_bad_inputs_cli.py."""

import math

import numpy as np
import pytest
import torch
from bad_inputs import RGB, P, assert_refused, gen
from PIL import Image

import sdviz


@pytest.fixture()
def pipe(embedded_pipe):
    """The embedded model, loaded once for the session (every row fails before it runs)."""
    return embedded_pipe


# (id, call, message it must contain); every call raises UsageError (a ValueError; its TypeError kind too)
GENERATE = [
    # 1. sizes
    *[
        (f"height={h!r}", gen(height=h), m)
        for h, m in [
            (100, "height must be a multiple of 8"),
            (60, "try 56 or 64"),
            (0, "height must be an int in [8, 4096]"),
            (-64, "in [8, 4096]"),
            (4, "in [8, 4096]"),
            (4104, "in [8, 4096]"),
            (8192, "in [8, 4096]"),
            (2**40, "in [8, 4096]"),
            ("64", "got str '64'"),
            (64.0, "got float 64.0"),
            (True, "got bool True"),
            (math.nan, "got float nan"),
            ([64], "got list"),
        ]
    ],  # fmt: skip
    *[
        (f"width={w!r}", gen(width=w), m)
        for w, m in [
            (100, "width must be a multiple of 8"),
            (1, "in [8, 4096]"),
            (-8, "in [8, 4096]"),
            (9000, "in [8, 4096]"),
            ("64", "got str"),
            (63.9, "got float"),
        ]
    ],  # fmt: skip
    ("size both wrong", gen(height=65, width=64), "try 64 or 72"),
    ("img2img with height", gen(image=RGB, height=64), "height and width do not apply to img2img"),
    ("img2img with width", gen(image=RGB, width=32), "height and width do not apply to img2img"),
    # 12. steps
    *[
        (f"steps={s!r}", gen(steps=s), m)
        for s, m in [
            (0, "steps must be an int in [1, 1000]"),
            (-1, "in [1, 1000]"),
            (1001, "num_train_timesteps=1000"),
            (10**6, "in [1, 1000]"),
            (True, "got bool True"),
            (2.0, "got float 2.0"),
            ("2", "got str '2'"),
            (None, "got NoneType"),
        ]
    ],  # fmt: skip
    ("pndm 1000 steps", gen(steps=1000, scheduler="pndm"), "PNDMScheduler runs at most 999 steps"),
    ("ddim 1000 steps", gen(steps=1000, scheduler="ddim"), "DDIMScheduler runs at most 999 steps"),
    ("lcm 51 steps", gen(steps=51, scheduler="lcm"), "LCMScheduler runs at most 50 steps"),
    ("deis 999 steps", gen(steps=999, scheduler="deis"), "DEISMultistepScheduler runs at most 998 steps"),
    ("dpm++2m 2000 steps", gen(steps=2000, scheduler="dpm++2m"), "in [1, 1000]"),
    # 7. guidance
    *[
        (f"guidance={g!r}", gen(guidance_scale=g), m)
        for g, m in [
            (math.nan, "guidance_scale must be a finite number >= 0, got nan"),
            (math.inf, "got inf"),
            (-math.inf, "got -inf"),
            (-1.0, "must be >= 0"),
            (-0.5, ">= 0"),
            ("7", "got str '7'"),
            (None, "got NoneType"),
            (True, "got bool"),
            ([7.5], "got list"),
            (np.float32("nan"), "finite"),
            (torch.tensor(7.5), "got Tensor"),
        ]
    ],  # fmt: skip
    # 12. seeds
    *[
        (f"seed={s!r}", gen(seed=s), m)
        for s, m in [
            (2**64, "seed must be an int in [0, 18446744073709551615]"),
            (2**70, "in [0,"),
            (-1, "in [0,"),
            (1.5, "got float"),
            ("0", "got str '0'"),
            (True, "got bool"),
            (math.nan, "got float nan"),
        ]
    ],  # fmt: skip
    # 12. prompts
    *[
        (f"prompt={p!r}", gen(prompt=p), m)
        for p, m in [
            ([], "got an empty list"),
            (None, "got NoneType"),
            (42, "got int 42"),
            (["a", 3], "holds int 3"),
            (b"a cat", "got bytes"),
            ((), "got an empty list"),
            ({"a": 1}, "got dict"),
        ]
    ],  # fmt: skip
    ("negative_prompt=3", gen(negative_prompt=3), "negative_prompt must be a string"),
    (
        "negative_prompt length",
        gen(prompt=["a", "b"], negative_prompt=["x"]),
        "negative_prompt has 1 entries",
    ),
    ("negative_prompt=[]", gen(negative_prompt=[]), "got an empty list"),
    *[
        (f"num_images_per_prompt={n!r}", gen(num_images_per_prompt=n), m)
        for n, m in [
            (0, "num_images_per_prompt must be an int in [1, 64]"),
            (-1, "in [1, 64]"),
            (65, "in [1, 64]"),
            (1.0, "got float"),
            ("1", "got str"),
            (True, "got bool"),
        ]
    ],  # fmt: skip
    *[
        (f"every={e!r}", gen(every=e), m)
        for e, m in [(0, "every must be an int >= 1"), (True, "got bool"), (1.5, "got float")]
    ],
    # 12. keep
    *[
        (f"keep={k!r}", gen(keep=k), m)
        for k, m in [
            ("x0", "keep must be a list of names, got the string 'x0': pass ['x0']"),
            (["x1"], "did you mean 'x0'"),
            (["latent"], "did you mean 'latents'"),
            ([0], "unknown keep entry 0"),
            (5, "got int 5"),
        ]
    ],  # fmt: skip
    ("dtype=int", gen(dtype=torch.int8), "floating torch.dtype"),
    ("dtype=str", gen(dtype="float16"), "floating torch.dtype"),
    # 4. img2img images and strength
    (
        "image RGBA tiny",
        gen(image=Image.new("RGBA", (4, 4))),
        "image is 4x4 pixels; the smallest this model takes is 8x8",
    ),
    ("image 4x4", gen(image=Image.new("RGB", (4, 4))), "the smallest this model takes is 8x8"),
    ("image 64x4", gen(image=Image.new("RGB", (64, 4))), "image is 64x4 pixels"),
    ("image 1x1 L", gen(image=Image.new("L", (1, 1))), "smallest this model takes is 8x8"),
    ("image path", gen(image="photo.png"), "open the file with PIL.Image.open"),
    ("image int", gen(image=3), "image must be a PIL image, a tensor or an array, got int"),
    ("image empty tensor", gen(image=torch.zeros(3)), "pass (C, H, W) or (B, C, H, W)"),
    ("mask tiny", gen(image=RGB, mask_image=Image.new("L", (2, 2))), "image is 2x2 pixels"),
    ("mask str", gen(image=RGB, mask_image="mask.png"), "mask_image must be a PIL image"),
    *[
        (f"strength={s!r}", gen(image=RGB, strength=s), m)
        for s, m in [
            (0.0, "strength must be in (0, 1]"),
            (-0.5, "in (0, 1]"),
            (1.5, "in (0, 1]"),
            (math.nan, "finite"),
            ("0.5", "got str '0.5'"),
            (None, "got NoneType"),
            (True, "got bool"),
            (math.inf, "finite"),
        ]
    ],  # fmt: skip
    (
        "strength 0.4 at 2 steps",
        gen(image=RGB, strength=0.4),
        "the smallest strength that runs one step at 2 steps is 0.5",
    ),
    ("strength 0.01 at 25 steps", gen(image=RGB, steps=25, strength=0.01), "at 25 steps is 0.04"),
    ("strength 0.1 at 3 steps", gen(image=RGB, steps=3, strength=0.1), "at 3 steps is 0.333333"),
    ("strength 0.02 at 49 steps", gen(image=RGB, steps=49, strength=0.02), "at 49 steps is 0.0204082"),
    (
        "strength inpaint",
        gen(image=RGB, mask_image=Image.new("L", (64, 64)), strength=0.1),
        "leaves no denoising step",
    ),
    # 8. attention options
    *[
        (f"attention={a!r}", gen(attention=a), m)
        for a, m in [
            ({"layers": ["foo"]}, "attention layers ['foo'] match no cross-attention layer"),
            ({"layers": ["up_blocks", "bar"]}, "['bar'] match no cross-attention layer"),
            ({"layers": [3]}, "downsampling factors (1, 2, 4, ...), got 3"),
            ({"layers": [64]}, "match no cross-attention"),
            ({"layers": [""]}, "got ''"),
            ({"layers": [None]}, "got None"),
            ({"layers": "up"}, "pass ['up']"),
            ({"layers": 2}, "layers must be a list"),
            ({"steps": (5, 10)}, "start after the run's last UNet evaluation"),
            ({"steps": (3, 4)}, "this run makes 3"),
            ({"steps": (3, 1)}, "0 <= start < end"),
            ({"steps": (-1, 1)}, "0 <= start < end"),
            ({"steps": (0, 1.5)}, "pair of ints"),
            ({"steps": 5}, "pair of ints"),
            ({"steps": (0, 1, 2)}, "pair of ints"),
            ({"steps": (True, 2)}, "pair of ints"),
            ({"heads": 99}, "head 99 is out of range"),
            ({"heads": -1}, "a head index >= 0"),
            ({"heads": "avg"}, "heads must be 'mean', 'max', 'all'"),
            ({"heads": True}, "heads must be"),
            ({"heads": 1.0}, "heads must be"),
            ({"per_layer": "yes"}, "per_layer must be False, True"),
            ({"per_layer": 1}, "per_layer must be"),
            ({"per_layer": None}, "per_layer must be"),
            ({"step_bins": 0}, "step_bins must be an int >= 1"),
            ({"step_bins": True}, "step_bins must be an int"),
            ({"step_bins": 2.0}, "got float"),
            ({"uncond": "yes"}, "uncond must be True or False"),
            ({"uncond": 1}, "uncond must be True or False"),
            ({"layer": ["up"]}, "did you mean 'layers'"),
            ({"bins": 2}, "unknown attention option"),
            ("yes", "attention must be True, False or a dict"),
            (1, "attention must be True, False or a dict"),
            (["up"], "attention must be"),
        ]
    ],  # fmt: skip
    # 9. schedulers through generate
    *[
        (f"scheduler={s!r}", gen(scheduler=s), m)
        for s, m in [
            ("eulr", "did you mean 'euler'"),
            ("", "unknown scheduler"),
            (("euler", {"beta_start": math.nan}), "beta_start must be a finite number"),
            (("euler", {"use_karras_sigmas": None}), "must be True or False, got None"),
            (3, "scheduler must be None, a name"),
            (("dpm++2m", {"solver_order": 0}), "solver_order must be an int in [1, 3]"),
            ("EDMEulerScheduler", "c_noise"),
        ]
    ],  # fmt: skip
    ("attention steps euler", gen(attention={"steps": (2, 3)}, scheduler="euler"), "this run makes 2 (0..1)"),
    ("attention steps heun", gen(attention={"steps": (4, 5)}, scheduler="heun"), "this run makes 3"),
    (
        "attention steps img2img",
        gen(image=RGB, strength=0.5, steps=4, scheduler="euler", attention={"steps": (2, 3)}),
        "this run makes 2",
    ),
    ("latents with img2img", gen(image=RGB, latents=torch.zeros(1, 4, 8, 8)), "img2img starts from image="),
    ("denoising_end on SD", gen(denoising_end=0.5), "applies to SDXL pipelines"),
    ("pipeline_kwargs own", gen(pipeline_kwargs={"guidance_scale": 2}), "generate()'s own arguments"),
    ("pipeline_kwargs unknown", gen(pipeline_kwargs={"eta_": 0.0}), "did you mean 'eta'"),
]


@pytest.mark.parametrize("call, message", [pytest.param(c, m, id=i) for i, c, m in GENERATE])
def test_generate_refuses(pipe, call, message):
    assert_refused(pipe, call, message)


def test_one_side_keeps_the_models_default_and_says_so(pipe, tmp_path):
    with pytest.warns(UserWarning, match="width not given: the model's default 64 is used with height 32"):
        trace = sdviz.generate(pipe, P, steps=1, scheduler="euler", height=32)
    assert trace.image.size == (64, 32) and (trace.height, trace.width) == (32, 64)
    assert trace.notes == ["width not given: the model's default 64 is used with height 32"]
    assert sdviz.Trace.load(trace.save(tmp_path / "t.sdviz")).notes == trace.notes
    assert sdviz.generate(pipe, P, steps=1, scheduler="euler", height=32, width=64).notes == []


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "LA", "CMYK", "I", "1"])
def test_img2img_converts_any_mode_to_rgb(pipe, mode):
    """RGBA used to be taken as 4-channel latents (a 512x512 result); L failed inside a convolution."""
    image = Image.new("RGB", (64, 64), (200, 30, 30)).convert(mode)
    trace = sdviz.generate(pipe, P, steps=2, scheduler="euler", image=image, strength=0.5)
    assert trace.image.size == (64, 64)


def test_smallest_strength_runs_one_step(pipe):
    from sdviz.validation import min_strength

    trace = sdviz.generate(
        pipe, P, steps=49, scheduler="euler", image=RGB, strength=min_strength(49), keep=["x0"]
    )
    assert trace.unet_evals == 1
