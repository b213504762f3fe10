"""sdviz.swap: our modules and samplers running inside a diffusers pipeline."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel

import sdviz
from sdviz.models import VAE, DDIMSampler, TextEncoder, UNet


@pytest.fixture(scope="module")
def ours(embedded_pipe_session):
    p = embedded_pipe_session
    return sdviz.swap(p, unet=UNet.from_diffusers(p.unet), vae=VAE.from_diffusers(p.vae),
                      text_encoder=TextEncoder.from_diffusers(p.text_encoder))


def _image(pipe, seed=0, steps=4, **kwargs):
    g = torch.Generator().manual_seed(seed)
    return pipe("a red letter A on a blue background", num_inference_steps=steps, generator=g, output_type="np",
                **kwargs).images[0]


def test_swapped_pipeline_draws_the_same_image(embedded_pipe, ours):
    want = _image(embedded_pipe, guidance_scale=7.5)
    assert want.std() > 0.01
    assert np.abs(_image(ours, guidance_scale=7.5) - want).max() <= 1e-3
    # the original is untouched; the new pipeline shares what was not swapped
    assert isinstance(embedded_pipe.unet, UNet2DConditionModel)
    assert type(ours.unet).__name__ == "UNetAdapter" and ours.tokenizer is embedded_pipe.tokenizer
    assert ours.name_or_path == "sdviz/embedded + sdviz.models(unet, vae, text_encoder)"


def test_adapters_speak_diffusers(embedded_pipe, ours):
    x, ctx = torch.randn(2, 4, 8, 8), torch.randn(2, 77, 64)
    with torch.no_grad():
        out = ours.unet(x, torch.tensor(10), encoder_hidden_states=ctx, return_dict=False)
        assert isinstance(out, tuple) and out[0].shape == x.shape
        assert torch.allclose(ours.unet(x, 10, ctx).sample, out[0])
        img = torch.rand(1, 3, 64, 64) * 2 - 1
        posterior = ours.vae.encode(img).latent_dist
        assert posterior.sample(torch.Generator().manual_seed(0)).shape == (1, 4, 8, 8)
        assert ours.vae.decode(posterior.mode()).sample.shape == img.shape
        ids = embedded_pipe.tokenizer(["a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
        text = ours.text_encoder(ids, output_hidden_states=True)
        assert len(text.hidden_states) == embedded_pipe.text_encoder.config.num_hidden_layers + 1
        assert torch.equal(text[0], text.last_hidden_state) and torch.equal(text[-1][-1], text.hidden_states[-1])
    assert ours.vae.config.scaling_factor == embedded_pipe.vae.config.scaling_factor
    assert ours.unet.config.in_channels == 4 and ours.unet.dtype == torch.float32
    assert ours.device.type == "cpu"
    with pytest.raises(TypeError, match="does not implement cross_attention_kwargs"):
        ours.unet(x, 10, ctx, cross_attention_kwargs={"scale": 0.5})


def test_clip_skip_runs_on_our_text_encoder(ours):
    # diffusers reaches the final norm through text_encoder.text_model, which transformers 5 removed
    a, b = _image(ours, steps=2), _image(ours, steps=2, clip_skip=1)
    assert np.abs(a - b).max() > 1e-3


@pytest.mark.parametrize(("name", "reference"), [("ddim", DDIMScheduler), ("ddpm", DDPMScheduler)])
def test_our_samplers_run_as_the_scheduler(embedded_pipe, ours, name, reference):
    embedded_pipe.scheduler = reference.from_config(embedded_pipe.scheduler.config)
    mine = sdviz.swap(ours, scheduler=name)
    assert mine.unet is ours.unet and type(mine.scheduler).__name__ == reference.__name__.replace("Scheduler", "SamplerScheduler")
    assert mine.scheduler.config.steps_offset == 1 and mine.scheduler.order == 1
    want = _image(embedded_pipe, steps=5)
    assert np.abs(_image(mine, steps=5) - want).max() <= 1e-3


def test_ddim_sampler_instance_and_eta(embedded_pipe):
    embedded_pipe.scheduler = DDIMScheduler.from_config(embedded_pipe.scheduler.config)
    mine = sdviz.swap(embedded_pipe, scheduler=DDIMSampler())
    want = _image(embedded_pipe, steps=4, eta=0.5)
    assert np.abs(_image(mine, steps=4, eta=0.5) - want).max() <= 1e-3
    assert np.abs(_image(mine, steps=4) - want).max() > 1e-3  # eta reaches our sampler


def test_img2img_uses_our_vae_and_noising(embedded_pipe, ours):
    init = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8")
    from PIL import Image

    init = Image.fromarray(init)
    embedded_pipe.scheduler = DDIMScheduler.from_config(embedded_pipe.scheduler.config)
    ref = StableDiffusionImg2ImgPipeline(**embedded_pipe.components)
    mine = StableDiffusionImg2ImgPipeline(**sdviz.swap(ours, scheduler="ddim").components)
    for p in (ref, mine):
        p.set_progress_bar_config(disable=True)
    want = ref("a cat", image=init, strength=0.6, num_inference_steps=5, generator=torch.Generator().manual_seed(0),
               output_type="np").images[0]
    got = mine("a cat", image=init, strength=0.6, num_inference_steps=5, generator=torch.Generator().manual_seed(0),
               output_type="np").images[0]
    assert np.abs(got - want).max() <= 1e-3


def test_swap_errors(embedded_pipe):
    with pytest.raises(ValueError, match="nothing to swap"):
        sdviz.swap(embedded_pipe)
    with pytest.raises(TypeError, match=r"UNet\.from_diffusers\(pipe\.unet\)"):
        sdviz.swap(embedded_pipe, unet=embedded_pipe.unet)
    with pytest.raises(ValueError, match=r"unknown sampler 'euler'.*\['ddim', 'ddpm'\]"):
        sdviz.swap(embedded_pipe, scheduler="euler")


def test_capture_records_a_swapped_run(embedded_pipe, ours):
    want = sdviz.generate(embedded_pipe, "a cat", steps=3, scheduler="DDIMScheduler", seed=0)
    got = sdviz.generate(ours, "a cat", steps=3, scheduler="DDIMScheduler", seed=0)
    assert len(got.steps) == len(want.steps) == 3
    for a, b in zip(got.steps, want.steps, strict=True):
        assert (a.latents - b.latents).abs().max() <= 1e-4 and (a.x0 - b.x0).abs().max() <= 1e-4
    mine = sdviz.swap(ours, scheduler="ddim")  # our sampler as the scheduler too
    with sdviz.capture(mine) as cap:
        mine("a cat", num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert [s.timestep for s in cap.trace.steps] == [int(t) for t in mine.scheduler.timesteps]
    assert all(s.x0 is not None for s in cap.trace.steps)
