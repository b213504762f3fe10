"""Bad inputs across the API and the CLI (issue 15): each is refused before the pipeline runs, with a message that
names the valid range or the fix; on the CLI as one line on stderr and exit status 2, never a traceback."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import sdviz
from sdviz import schedulers
from sdviz.attention_maps import AttentionMaps, AttentionOptions
from sdviz.cli import main
from sdviz.validation import UsageError

P = "a red letter A on a blue background"
RGB = Image.new("RGB", (64, 64), (200, 30, 30))


@pytest.fixture(scope="module")
def pipe():
    """The embedded model, loaded once for the module (every row fails before it runs)."""
    p = sdviz.load_pipeline(device="cpu")
    p.set_progress_bar_config(disable=True)
    return p


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
API = [
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
            (2**64, "seed must be an int in [0, 1.84467e+19]"),
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
    # capture() directly
    ("capture keep str", lambda pipe: sdviz.capture(pipe, keep="latents"), "pass ['latents']"),
    ("capture every 0", lambda pipe: sdviz.capture(pipe, every=0), "every must be an int >= 1"),
    ("capture attention str", lambda pipe: sdviz.capture(pipe, attention="all"), "attention must be True"),
    ("capture dtype", lambda pipe: sdviz.capture(pipe, dtype=torch.int32), "floating torch.dtype"),
    # AttentionOptions directly
    ("options layers str", lambda pipe: AttentionOptions(layers="down"), "pass ['down']"),
    ("options per_layer yes", lambda pipe: AttentionOptions(per_layer="yes"), "per_layer must be"),
    ("options heads bool", lambda pipe: AttentionOptions(heads=False), "heads must be"),
    # 12. word maps
    (
        "word_map index 5",
        lambda pipe: maps().word_map("red", index=5),
        "index 5 is out of range: the batch has 1",
    ),
    ("word_map index -1", lambda pipe: maps().word_map("red", index=-1), "index -1 is out of range"),
    ("word_map index str", lambda pipe: maps().word_map("red", index="0"), "index must be an int"),
    ("word_map None", lambda pipe: maps().word_map(None), "word must be a word or phrase"),
    ("word_map bool", lambda pipe: maps().word_map(True), "word must be a word or phrase"),
    ("word_map float", lambda pipe: maps().word_map(1.0), "word must be a word or phrase"),
    (
        "word_map unknown",
        lambda pipe: maps().word_map("dog"),
        "'dog' is not a word of the prompt; its words are",
    ),
    (
        "word_map truncated",
        lambda pipe: full_maps().word_map("dog"),
        "filled CLIP's 77 tokens: words after that were cut off",
    ),
    ("word_map position", lambda pipe: maps().word_map(99), "token position 99 is out of range"),
    ("word_map size 0", lambda pipe: maps().word_map("red", size=(0, 0)), "size must be an int in [1, 4096]"),
    (
        "word_map size neg",
        lambda pipe: maps().word_map("red", size=(-4, 8)),
        "size must be an int in [1, 4096]",
    ),
    ("word_map size str", lambda pipe: maps().word_map("red", size="big"), "size must be None"),
    ("word_map size float", lambda pipe: maps().word_map("red", size=(8.0, 8)), "got float"),
    ("word_map size 3", lambda pipe: maps().word_map("red", size=(8, 8, 8)), "size must be None"),
    ("word_map size huge", lambda pipe: maps().word_map("red", size=(10**6, 10**6)), "[1, 4096]"),
    ("word_map layers str", lambda pipe: maps().word_map("red", layers="up"), "pass ['up']"),
    ("word_map steps int", lambda pipe: maps().word_map("red", steps=3), "steps must be a (start, end) pair"),
    ("word_map occurrence", lambda pipe: maps().word_map("red", occurrence=2), "occurs 1 time"),
    ("word_map head", lambda pipe: maps().word_map("red", head=0), "per-head maps were not captured"),
    (
        "word_map uncond",
        lambda pipe: maps().word_map("red", uncond=True),
        "unconditional maps were not captured",
    ),
    # 9. schedulers API
    *[
        (f"schedule {a!r} {k!r}", sched(*a, **k), m)
        for a, k, m in [
            (("pndm", 1000), {}, "PNDMScheduler runs at most 999 steps"),
            (("dpm++2m", 2000), {}, "in [1, 1000]"),
            (("lms", 2000), {}, "in [1, 1000]"),
            (("euler", 0), {}, "steps must be an int >= 1"),
            (("euler", True), {}, "got bool"),
            (("euler", 2.5), {}, "got float"),
            (("tcd", 100), {}, "runs at most 50 steps"),
            (("euler", 10), {"beta_start": math.nan}, "beta_start must be a finite number"),
            (("euler", 10), {"beta_start": -1.0}, "beta_start must be in [0, 1)"),
            (("euler", 10), {"beta_end": 1.5}, "beta_end must be in (0, 1)"),
            (("euler", 10), {"beta_end": 0.99}, "leave no signal by the last training step"),
            (("euler", 10), {"beta_start": math.inf}, "finite"),
            (("euler", 10), {"num_train_timesteps": 0}, "num_train_timesteps must be an int in [2, 100000]"),
            (("euler", 10), {"num_train_timesteps": 1}, "in [2, 100000]"),
            (("euler", 10), {"num_train_timesteps": 10**9}, "in [2, 100000]"),
            (("dpm++2m", 10), {"solver_order": 0}, "solver_order must be an int in [1, 3]"),
            (("dpm++2m", 10), {"solver_order": 4}, "in [1, 3]"),
            (("deis", 10), {"solver_order": -1}, "in [1, 3]"),
            (("unipc", 10), {"solver_order": 0}, "solver_order must be an int >= 1"),
            (("sa_solver", 10), {"predictor_order": 5}, "predictor_order must be an int in [1, 4]"),
            (("sa_solver", 10), {"corrector_order": 0}, "corrector_order must be an int in [1, 4]"),
            (
                ("euler", 10),
                {"trained_betas": [0.01] * 10},
                "trained_betas has 10 values but num_train_timesteps is 1000",
            ),
            (("euler", 10), {"trained_betas": [2.0] * 1000}, "trained_betas must all be numbers in (0, 1)"),
            (("euler", 10), {"trained_betas": [math.nan] * 1000}, "in (0, 1)"),
            (("euler", 10), {"use_karras_sigmas": None}, "use_karras_sigmas must be True or False, got None"),
            (("euler", 10), {"use_karras_sigmas": "yes"}, "use_karras_sigmas must be bool"),
            (("ddim", 10), {"steps_offset": -1}, "steps_offset must be an int >= 0"),
            (("ddim", 10), {"steps_offset": 1000}, "steps_offset=1000 must be at most 999"),
            (("lcm", 10), {"original_inference_steps": 0}, "original_inference_steps must be an int >= 1"),
            (("lcm", 10), {"original_inference_steps": 2000}, "must be at most 1000"),
            (("ddim", 10), {"clip_sample_range": 0.0}, "clip_sample_range must be > 0"),
            (("ddim", 10), {"dynamic_thresholding_ratio": 1.5}, "in (0, 1]"),
            (("euler", 10), {"sigma_min": -1.0}, "sigma_min must be > 0"),
            (("euler", 10), {"sigma_max": math.nan}, "sigma_max must be a finite number"),
            (("lcm", 10), {"timestep_scaling": 0.0}, "timestep_scaling must be > 0"),
            (("dpm++sde", 10), {"noise_sampler_seed": -1}, "noise_sampler_seed must be an int in [0,"),
            (("dpm++2m", 10), {"lambda_min_clipped": math.nan}, "lambda_min_clipped must be a number"),
            (("heun_karras", 10), {"beta_start": 0.0}, "need beta_start > 0"),
            (("euler", 10), {"timestep_spacing": "trailling"}, "is not one of"),
        ]
    ],  # fmt: skip
    ("validate name type", lambda pipe: schedulers.validate(3), "a scheduler name must be a str"),
    ("make config type", lambda pipe: schedulers.make("euler", config=[1]), "config must be a mapping"),
    ("describe unknown", lambda pipe: schedulers.describe("dpmpp"), "unknown scheduler"),
    # 12. loading
    ("model ''", lambda pipe: sdviz.load_pipeline(""), "model is an empty string"),
    ("model '  '", lambda pipe: sdviz.load_pipeline("  "), "model is an empty string"),
    ("model int", lambda pipe: sdviz.load_pipeline(3), "model must be a path, a hub id or None"),
    ("device gpu", lambda pipe: sdviz.load_pipeline(device="gpu"), "unknown device 'gpu'"),
    ("device cuda:x", lambda pipe: sdviz.load_pipeline(device="cuda:x"), "unknown device"),
    ("device int", lambda pipe: sdviz.load_pipeline(device=0), "device must be 'auto'"),
    ("dtype str", lambda pipe: sdviz.load_pipeline(dtype="float16"), "dtype must be a floating torch.dtype"),
]
if not torch.cuda.is_available():
    API += [
        ("device cuda", lambda pipe: sdviz.load_pipeline(device="cuda"), "this machine has no CUDA device"),
        ("device cuda:1", lambda pipe: sdviz.load_pipeline(device="cuda:1"), "no CUDA device"),
    ]


@pytest.mark.parametrize("call, message", [pytest.param(c, m, id=i) for i, c, m in API])
def test_api_refuses(pipe, call, message):
    scheduler = pipe.scheduler
    with pytest.raises(UsageError) as e:
        call(pipe)
    assert message in str(e.value), str(e.value)
    assert "\n" not in str(e.value)
    assert pipe.scheduler is scheduler  # nothing of the pipeline was changed


@pytest.mark.parametrize("index, components, message", [
    ({}, (), "names no pipeline class (_class_name)"),
    ("not json", (), "is not valid JSON"),
    ([1, 2], (), "names no pipeline class"),
    (SD_INDEX, ("vae",), "lacks the component folder(s) ['unet']"),
    (SD_INDEX, (), "lacks the component folder(s) ['unet', 'vae']"),
    ({**SD_INDEX, "_class_name": "FluxPipeline"}, ("unet", "vae"), "is not a family sdviz captures"),
])  # fmt: skip
def test_load_refuses_broken_folders(tmp_path_factory, index, components, message):
    with pytest.raises(UsageError) as e:
        sdviz.load_pipeline(folder(tmp_path_factory, index, components))
    assert message in str(e.value)


# (argv, message): the CLI, in-process; every row exits 2 with one line on stderr
CLI = [
    # 1. sizes
    *[
        (["generate", "x", f"--{side}", v], m)
        for side in ("height", "width")
        for v, m in [
            ("60", f"{side} must be a multiple of 8"),
            ("100", "try 96 or 104"),
            ("0", f"--{side} must be an int in [1, 4096]"),
            ("-8", "in [1, 4096]"),
            ("5000", "in [1, 4096]"),
            ("abc", f"argument --{side}: invalid int value: 'abc'"),
            ("6.5", "invalid int value"),
        ]
    ],  # fmt: skip
    # 5. devices
    (["generate", "x", "--device", "gpu"], "unknown device 'gpu'"),
    (["generate", "x", "--device", "cuda:x"], "unknown device"),
    (["generate", "x", "--device", ""], "unknown device ''"),
    (["compare", "x", "--device", "tpu"], "unknown device 'tpu'"),
    # steps, seeds, guidance
    *[
        (["generate", "x", *a], m)
        for a, m in [
            (["--steps", "0"], "--steps must be an int >= 1"),
            (["--steps", "-3"], "--steps must be an int >= 1"),
            (["--steps", "2000"], "in [1, 1000]"),
            (["--steps", "1000", "--scheduler", "pndm"], "runs at most 999 steps"),
            (["--steps", "x"], "invalid int value: 'x'"),
            (["--seed", "-1"], "seed must be an int in [0,"),
            (["--seed", str(2**64)], "seed must be an int in [0,"),
            (["--seed", "1.5"], "invalid int value"),
            (["--guidance-scale", "nan"], "guidance_scale must be a finite number >= 0, got nan"),
            (["--guidance-scale", "inf"], "finite"),
            (["--guidance-scale", "-2"], ">= 0"),
            (["--guidance-scale", "seven"], "invalid float value"),
            (["--scheduler", "eulr"], "did you mean 'euler'"),
            (["--scheduler", ""], "unknown scheduler"),
            (["--trace-dtype", "int8"], "invalid choice: 'int8'"),
            (["--model", ""], "model is an empty string"),
            (["--model", "/no/such/folder"], "no such file or folder"),
            (["--unknown"], "unrecognized arguments: --unknown"),
        ]
    ],  # fmt: skip
    (["generate"], "the following arguments are required: prompt"),
    (["nosuch"], "invalid choice: 'nosuch'"),
    # compare
    *[
        (["compare", "x", *a], m)
        for a, m in [
            (["--steps", "0"], "--steps must be an int >= 1"),
            (["--steps", "a,b"], "separated by commas"),
            (["--steps", ","], "separated by commas"),
            (["--steps", "10,2000"], "in [1, 1000]"),
            (["--schedulers", "eulr"], "did you mean 'euler'"),
            (["--schedulers", ","], "--schedulers needs"),
            (["--schedulers", "pndm", "--steps", "1000"], "runs at most 999 steps"),
            (["--guidance-scale", "nan"], "finite"),
            (["--seed", "-5"], "seed must be"),
        ]
    ],  # fmt: skip
    # 5. schedulers
    *[
        (["schedulers", *a], m)
        for a, m in [
            (["dpm++2m", "--steps", "2000"], "in [1, 1000]"),
            (["pndm", "--steps", "1000"], "PNDMScheduler runs at most 999"),
            (["lcm", "--steps", "51"], "LCMScheduler runs at most 50 steps"),
            (["euler", "--steps", "0"], "steps must be an int >= 1"),
            (["euler", "--steps", "-1"], ">= 1"),
            (["eulr"], "did you mean 'euler'"),
            (["--steps", "5"], "--steps needs a scheduler NAME"),
            (["euler", "--steps", "ten"], "invalid int value"),
            (["EDMEulerScheduler"], "c_noise"),
        ]
    ],  # fmt: skip
    # 5. evaluate
    *[
        (["evaluate", *a], m)
        for a, m in [
            (["--n-prompts", "1", "--steps", "0"], "--steps must be an int >= 1"),
            (["--n-prompts", "0"], "--n-prompts must be an int >= 1"),
            (["--n-prompts", "-1"], ">= 1"),
            (["--per-prompt", "0"], "--per-prompt must be an int >= 1"),
            (["--steps", "a"], "separated by commas"),
            (["--steps", ""], "separated by commas"),
            (["--scheduler", "eulr"], "did you mean"),
            (["--scheduler", ","], "--schedulers needs"),
            (["--guidance-scale", "nan"], "finite"),
            (["--n-prompts", "1", "--steps", "1000", "--scheduler", "pndm"], "runs at most 999 steps"),
        ]
    ],  # fmt: skip
    # 12. train: a step count of 0 would write an untrained model
    *[
        (["train", stage, *extra, opt, v], m)
        for stage, extra in (
            ("autoencoder", []),
            ("diffusion", ["--vae", "."]),
            ("checker", []),
            ("embedded", []),
        )
        for opt, v, m in [
            ("--steps", "0", "--steps must be an int >= 1"),
            ("--threads", "0", "--threads must be an int >= 1"),
        ]
        if not (stage == "embedded" and opt == "--steps")
    ],  # fmt: skip
    (["train", "autoencoder", "--batch-size", "0"], "--batch-size must be an int >= 1"),
    (["train", "embedded", "--decoder-steps", "-1"], "--decoder-steps must be an int >= 0"),
    (["train", "autoencoder", "--model", "gan"], "invalid choice: 'gan'"),
    (["train"], "the following arguments are required: STAGE"),
    # report
    (["report", "/no/such.sdviz"], "no trace file at /no/such.sdviz"),
]


@pytest.fixture()
def cli(pipe, monkeypatch, tmp_path):
    """Run `sdviz` in-process in a fresh folder, with the module's pipeline for the embedded model; return the
    exit status."""
    import sdviz.pipeline

    monkeypatch.chdir(tmp_path)
    real = sdviz.pipeline.load_pipeline
    monkeypatch.setattr(
        sdviz.pipeline, "load_pipeline", lambda model=None, **k: pipe if model is None else real(model, **k)
    )

    def run(argv):
        try:
            return main(argv)
        except SystemExit as e:  # argparse's own errors
            return e.code

    return run


@pytest.mark.parametrize("argv, message", [pytest.param(a, m, id=" ".join(a)[:70]) for a, m in CLI])
def test_cli_refuses(cli, capsys, tmp_path, argv, message):
    rc = cli(argv)
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.iterdir())  # nothing was written


@pytest.fixture(scope="module")
def saved_trace(pipe, tmp_path_factory):
    trace = sdviz.generate(pipe, P, steps=1, scheduler="euler", attention=True)
    return trace.save(tmp_path_factory.mktemp("trace") / "t.sdviz")


KEYS = ["format", "prompt", "negative_prompt", "seed", "guidance_scale", "height", "width", "model", "scheduler",
        "scheduler_config", "tokens", "negative_tokens", "steps", "num_images", "complete", "prompts", "kept",
        "unet_evals", "wall_time", "error", "img2img", "compare_key", "latent_rgb"]  # fmt: skip


@pytest.mark.parametrize("key", KEYS)
def test_report_on_a_trace_with_one_damaged_key(cli, capsys, saved_trace, tmp_path, key):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(saved_trace), "pt") as f:
        meta = json.loads(f.metadata()["sdviz"])
    del meta[key]
    damaged = tmp_path / "damaged.sdviz"
    save_file(load_file(str(saved_trace)), str(damaged), metadata={"sdviz": json.dumps(meta)})
    rc = cli(["report", str(damaged)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(damaged) in err


@pytest.mark.parametrize("argv, message", [
    (["generate", "x", "--height", "60"], "height must be a multiple of 8"),
    (["schedulers", "dpm++2m", "--steps", "2000"], "in [1, 1000]"),
    (["evaluate", "--n-prompts", "1", "--steps", "0"], "--steps must be an int >= 1"),
    (["generate", "x", "--device", "gpu"], "unknown device 'gpu'"),
])  # fmt: skip
def test_cli_exit_status_in_a_real_process(tmp_path, argv, message):
    """The real exit status and stderr of the installed entry point (a few rows; the rest run in-process)."""
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "sdviz", *argv], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_bug_keeps_its_traceback(monkeypatch):
    """A TypeError from sdviz's own code is not a user's mistake: the CLI lets it through."""
    import sdviz.commands.schedulers as cmd

    def broken(*a, **k):
        raise TypeError("a bug")

    monkeypatch.setattr(cmd, "format_list", broken)
    with pytest.raises(TypeError, match="a bug"):
        main(["schedulers"])


def test_one_side_keeps_the_models_default_and_says_so(pipe):
    with pytest.warns(UserWarning, match="width not given: the model's default 64 is used with height 32"):
        trace = sdviz.generate(pipe, P, steps=1, scheduler="euler", height=32)
    assert trace.image.size == (64, 32) and (trace.height, trace.width) == (32, 64)


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
