"""Bad arguments of capture(), AttentionOptions, word maps, the scheduler registry and load_pipeline (issue 15)."""

import math

import pytest
import torch
from bad_inputs import SD_INDEX, assert_refused, folder, full_maps, maps, sched

import sdviz
from sdviz import schedulers
from sdviz.attention_maps import AttentionOptions
from sdviz.validation import UsageError


@pytest.fixture()
def pipe(embedded_pipe):
    """The embedded model, loaded once for the session (every row fails before it runs)."""
    return embedded_pipe


API = [
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
    ("device gpu", lambda pipe: sdviz.load_pipeline(device="gpu"), "unknown device 'gpu' (an NVIDIA GPU is 'cuda')"),
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
    assert_refused(pipe, call, message)


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
