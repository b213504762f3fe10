"""What draws and compares works on every family's traces; every scheduler drives SDXL; generate's family errors."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from families import PROMPT, build_inpaint, build_refiner, build_sd2, build_sdxl
from PIL import Image

import sdviz
from sdviz import plot, widgets
from sdviz.report import render_report

INIT = Image.new("RGB", (32, 32), (30, 160, 40))
MASK = Image.new("L", (32, 32), 0)
MASK.paste(255, (0, 0, 16, 32))


@pytest.fixture(scope="module")
def traces():
    xl, sd2, inpaint = build_sdxl(), build_sd2(), build_inpaint()
    opts = {"steps": 3, "seed": 0, "attention": {"step_bins": 2}}
    return {
        "sdxl": sdviz.generate(xl, PROMPT, **opts),
        "sd2": sdviz.generate(sd2, PROMPT, **opts),
        "inpaint": sdviz.generate(inpaint, PROMPT, image=INIT, mask_image=MASK, **opts),
    }


@pytest.mark.parametrize("family", ["sdxl", "sd2", "inpaint"])
def test_report_plots_and_widgets(traces, family):
    trace = traces[family]
    page = render_report(trace)
    for heading in ("What CLIP sees", "Schedule", "Denoising, step by step", "Cross-attention"):
        assert f"<h2>{heading}</h2>" in page
    assert ("<h2>What the second text encoder sees</h2>" in page) == (family == "sdxl")
    assert ("<h2>Added conditioning (SDXL)</h2>" in page) == (family == "sdxl")
    assert ("<h2>Inpainting mask</h2>" in page) == (family == "inpaint")
    assert trace.pipeline in page
    if family == "sdxl":
        assert "<td>original height</td><td>32</td>" in page
    if family == "inpaint":
        assert "white: repainted, 50% of the image (mask 32 x 32)" in page
    ims = plot.plot_prompt_attention(trace, fig=plt.figure())
    assert len(ims) == 8  # a, red, letter, a, on, a, blue, background: each occurrence of "a" apart
    plot.plot_step_strip(trace, steps=[0, 2], fig=plt.figure())
    plot.plot_tokens(trace.tokens_2 or trace.tokens, ax=plt.figure().add_subplot())
    plot.plot_guidance_norms(trace, ax=plt.figure().add_subplot())
    explorer = widgets.AttentionExplorer(trace)
    assert explorer.word.options[:2] == ("a #1", "red")
    explorer.word.value = "a #2"
    np.testing.assert_allclose(explorer.heat.get_array(),
                               trace.attention.word_map("a", occurrence=2, size="image").numpy(), rtol=1e-6)  # fmt: skip
    assert explorer.error.value == ""
    widgets.StepScrubber(trace).show(1)
    plt.close("all")


def test_compare_on_sdxl():
    xl = build_sdxl()
    res = sdviz.compare(xl, PROMPT, schedulers=["euler", "dpm++2m"], steps=[2, 3], seed=1, attention=True)
    assert list(res) == [("euler", 2), ("euler", 3), ("dpm++2m", 2), ("dpm++2m", 3)]
    assert all(t.tokens_2 is not None and t.added_cond is not None and t.attention is not None for t in res.values())
    euler, dpm = res[("euler", 3)], res[("dpm++2m", 3)]
    ratio = (euler.init_latents / dpm.init_latents).flatten()  # the same noise, scaled per scheduler
    assert np.allclose(ratio.numpy(), ratio[0].item(), rtol=1e-4)
    plot.plot_compare_grid(res, fig=plt.figure())
    plt.close("all")


@pytest.mark.parametrize("builder", [build_sdxl, build_sd2], ids=["sdxl", "sd2-v"])
def test_every_scheduler_drives_the_family(builder):
    pipe = builder()
    for name in sdviz.schedulers.names():
        trace = sdviz.generate(pipe, PROMPT, steps=2, seed=0, scheduler=name, keep=["x0"])
        pixels = np.asarray(trace.image, dtype=np.float64)
        assert trace.scheduler == name and trace.unet_evals >= 2 and np.isfinite(pixels).all(), name
        assert all(torch.isfinite(s.x0).all() for s in trace.steps if s.x0 is not None), name
    assert type(pipe.scheduler).__name__ in ("EulerDiscreteScheduler", "DDIMScheduler")  # its own, put back


def test_a_config_silent_on_latent_conventions_gets_them():
    bare_euler = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1,
                  "timestep_spacing": "leading"}  # fmt: skip
    assert sdviz.schedulers.make("ddim", config=bare_euler).config.clip_sample is False  # diffusers' default clips
    pndm = sdviz.schedulers.make("PNDMScheduler", config=bare_euler)
    assert pndm.config.skip_prk_steps is True
    pndm.set_timesteps(2)  # the Runge-Kutta warm-up needs 4 steps or more
    assert sdviz.schedulers.make("ddim", config={**bare_euler, "clip_sample": True}).config.clip_sample is True


def test_generate_refuses_what_a_family_cannot_do(embedded_pipe):
    xl, refiner, inpaint = build_sdxl(), build_refiner(), build_inpaint()
    cases = [
        (embedded_pipe, {"mask_image": MASK}, "mask_image= inpaints an image: pass the image to repaint as image="),
        (inpaint, {}, "9-channel inpainting UNet: pass image= and mask_image="),
        (inpaint, {"image": INIT}, "9-channel inpainting UNet"),
        (refiner, {}, "no first text encoder .a refiner.: it refines an image"),
        (embedded_pipe, {"denoising_end": 0.5}, "denoising_end applies to SDXL pipelines"),
        (xl, {"denoising_start": 0.5}, "denoising_start applies to SDXL img2img and inpainting .pass image=."),
        (xl, {"denoising_end": 1.5}, r"denoising_end must be in \(0, 1\)"),
        (embedded_pipe, {"image": INIT, "latents": torch.zeros(1, 4, 8, 8)}, "latents= sets the initial noise"),
        (xl, {"pipeline_kwargs": {"orignal_size": (8, 8)}}, "takes no .'orignal_size'. .did you mean 'original_size'"),
        (xl, {"pipeline_kwargs": {"num_inference_steps": 3}}, r"generate\(\)'s own arguments"),
        (xl, {"pipeline_kwargs": {"denoising_end": 3}}, r"\['denoising_end'\] are generate\(\)'s own arguments"),
        (embedded_pipe, {"image": INIT, "strength": 0.0}, r"strength must be in \(0, 1\]"),
    ]
    for pipe, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            sdviz.generate(pipe, PROMPT, steps=2, **kwargs)
