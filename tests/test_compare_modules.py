import pytest
import torch

import sdviz
from sdviz.models import VAE, TextEncoder, UNet

PROMPT = "a red letter A on a blue background"


@pytest.fixture()
def swapped(embedded_pipe):
    p = embedded_pipe
    return sdviz.swap(p, unet=UNet.from_diffusers(p.unet), vae=VAE.from_diffusers(p.vae),
                      text_encoder=TextEncoder.from_diffusers(p.text_encoder))


def test_converted_modules_stay_together(embedded_pipe, swapped):
    diff = sdviz.compare_modules(embedded_pipe, swapped, PROMPT, seed=0, steps=6, scheduler="ddim")
    assert set(diff.max_abs) == {"latents", "x0", "noise_pred", "noise_pred_text", "noise_pred_uncond"}
    assert len(diff.max_abs["latents"]) == 6
    assert diff.max_abs["latents"].max() < 1e-3 and diff.image_max_abs < 1e-2
    assert diff.first_divergence("latents", tol=1e-3) is None
    assert "final image" in diff.summary()


def test_a_broken_module_shows_where_it_diverges(embedded_pipe):
    unet = UNet.from_diffusers(embedded_pipe.unet)
    with torch.no_grad():
        for p in unet.parameters():  # a small error in every weight, as a slightly wrong port would have
            p.mul_(1.01)
    diff = sdviz.compare_modules(embedded_pipe, sdviz.swap(embedded_pipe, unet=unet), PROMPT, seed=0, steps=6,
                                 scheduler="ddim")
    assert diff.first_divergence("noise_pred", tol=1e-4) == 0
    assert diff.max_abs["latents"][-1] > diff.max_abs["latents"][0]  # errors accumulate over the steps


def test_mismatched_runs_are_refused(embedded_pipe, swapped):
    swapped_ddpm = sdviz.swap(embedded_pipe, unet=UNet.from_diffusers(embedded_pipe.unet), scheduler="ddim")
    with pytest.raises(ValueError, match="same scheduler"):
        sdviz.compare_modules(embedded_pipe, swapped_ddpm, PROMPT, steps=4)


def test_attention_on_our_unet_is_a_clear_error(swapped):
    with pytest.raises(ValueError, match="attention capture needs a diffusers UNet"):
        sdviz.generate(swapped, PROMPT, steps=2, attention=True)
