"""Every family on tiny models: SDXL (base and refiner), SD 2.x v-prediction, inpainting.

Images bit-identical with and without capture and attention, x0 from the captured noise prediction, maps that
sum as documented, what each family records, save/load.
"""

import numpy as np
import pytest
import torch
from families import PROMPT, build_inpaint, build_refiner, build_sd2, build_sdxl
from PIL import Image

import sdviz
from sdviz.report import render_report
from sdviz.schedules import predict_x0
from sdviz.tokens import TokenInfo
from sdviz.trace import Trace

INIT = Image.new("RGB", (32, 32), (200, 40, 40))
MASK = Image.new("L", (32, 32), 0)
MASK.paste(255, (8, 4, 24, 20))


@pytest.fixture(scope="module")
def pipes():
    return {"sdxl": build_sdxl(), "refiner": build_refiner(), "sd2": build_sd2(), "inpaint": build_inpaint()}


def _task(family):
    """The arguments each family runs with: the refiner refines an image, inpainting repaints a masked one."""
    return {"refiner": {"image": INIT}, "inpaint": {"image": INIT, "mask_image": MASK}}.get(family, {})


FAMILIES = ["sdxl", "refiner", "sd2", "inpaint"]


@pytest.mark.parametrize("family", FAMILIES)
def test_images_bit_identical_with_and_without_capture(pipes, family):
    pipe, task = pipes[family], _task(family)
    g = torch.Generator().manual_seed(3)
    plain = pipe(PROMPT, num_inference_steps=3, guidance_scale=7.5, generator=g, **{"strength": 0.8, **task} if task else {})
    plain = np.asarray(plain.images[0])
    for attention in (False, {"per_layer": "layer", "heads": "all", "uncond": True}):
        trace = sdviz.generate(pipe, PROMPT, steps=3, seed=3, attention=attention, **task)
        assert np.array_equal(np.asarray(trace.image), plain), f"{family}, attention={attention}"
    assert all(type(p).__name__ == "AttnProcessor2_0" for p in pipe.unet.attn_processors.values())


@pytest.mark.parametrize("family", FAMILIES)
def test_x0_from_the_captured_noise_prediction(pipes, family):
    trace = sdviz.generate(pipes[family], PROMPT, steps=4, seed=0, scheduler="euler", **_task(family))
    config = trace.scheduler_config
    assert config["prediction_type"] == ("v_prediction" if family == "sd2" else "epsilon")
    samples = [trace.init_latents] + [s.latents for s in trace.steps[:-1]]
    for step, sample in zip(trace.steps, samples, strict=True):  # Euler returns its own x0: sdviz's must agree
        ours = predict_x0(sample, step.noise_pred, step.sigma, prediction_type=config["prediction_type"],
                          karras_scale=True)  # fmt: skip
        torch.testing.assert_close(ours, step.x0, rtol=1e-5, atol=1e-5)
        guided = step.noise_pred_uncond + 7.5 * (step.noise_pred_text - step.noise_pred_uncond)
        torch.testing.assert_close(guided, step.noise_pred, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_maps_from_every_layer_sum_as_documented(pipes, family):
    pipe = pipes[family]
    trace = sdviz.generate(pipe, PROMPT, steps=2, seed=0, attention={"per_layer": "layer"}, **_task(family))
    m = trace.attention
    layers = [n.removesuffix(".processor") for n in pipe.unet.attn_processors if n.endswith("attn2.processor")]
    assert sorted(m.groups) == sorted(layers)  # every transformer layer of every block
    assert (m.counts == trace.unet_evals).all()  # each layer once per UNet evaluation
    h, w = m.latent_size
    torch.testing.assert_close(m.token_maps().sum(0), torch.ones(h, w), rtol=1e-5, atol=1e-5)
    by_resolution = sdviz.generate(pipe, PROMPT, steps=2, seed=0, attention={"per_layer": "resolution"},
                                   **_task(family)).attention  # fmt: skip
    assert by_resolution.groups == sorted({str(f) for f in m.factors}, key=int)
    torch.testing.assert_close(by_resolution.word_map("red"), m.word_map("red"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_load(pipes, family, tmp_path):
    trace = sdviz.generate(pipes[family], PROMPT, steps=2, seed=0, attention=True, **_task(family))
    loaded = Trace.load(trace.save(tmp_path / "t.sdviz"))
    assert loaded == trace
    assert loaded.pipeline == trace.pipeline == type(pipes[family]).__name__
    for name in ("tokens_2", "mask", "added_cond"):
        assert (getattr(loaded, name) is None) == (getattr(trace, name) is None)


def test_sdxl_records_both_tokenizers_and_the_added_conditioning(pipes):
    pipe = pipes["sdxl"]
    trace = sdviz.generate(pipe, PROMPT, steps=2, seed=0, negative_prompt="blurry")
    assert isinstance(trace.tokens_2, TokenInfo) and isinstance(trace.tokens, TokenInfo)
    assert trace.tokens_2.tokens[: trace.tokens_2.length] == trace.tokens.tokens[: trace.tokens.length]
    assert trace.tokens.input_ids[-1] == 49407 and trace.tokens_2.input_ids[-1] == 0  # OpenCLIP pads with "!"
    cond = trace.added_cond
    assert sorted(cond) == ["negative_text_embeds", "negative_time_ids", "text_embeds", "time_ids"]
    assert cond["time_ids"].tolist() == [[32.0, 32.0, 0.0, 0.0, 32.0, 32.0]]  # original size, crop, target size
    ids = torch.tensor([trace.tokens_2.input_ids])
    torch.testing.assert_close(cond["text_embeds"], pipe.text_encoder_2(ids).text_embeds, rtol=1e-5, atol=1e-6)
    micro = sdviz.generate(pipe, PROMPT, steps=2, seed=0, pipeline_kwargs={
        "prompt_2": "a watercolour painting", "original_size": (64, 48), "crops_coords_top_left": (4, 2)})
    assert micro.added_cond["time_ids"].tolist() == [[64.0, 48.0, 4.0, 2.0, 32.0, 32.0]]
    assert micro.tokens_2.prompt == "a watercolour painting" and micro.tokens.prompt == PROMPT
    assert micro.negative_tokens is None  # SDXL's empty negative prompt is zeros: no encoder saw it


def test_sdxl_base_hands_over_to_the_refiner(pipes):
    base = sdviz.generate(pipes["sdxl"], PROMPT, steps=8, seed=0, denoising_end=0.5)
    refined = sdviz.generate(pipes["refiner"], PROMPT, steps=8, seed=0, image=base.steps[-1].latents,
                             denoising_start=0.5, attention=True)  # fmt: skip
    whole = sdviz.schedulers.schedule("EulerDiscreteScheduler", 8, config=pipes["sdxl"].scheduler.config)
    assert torch.equal(torch.cat([base.timesteps, refined.timesteps]), whole.timesteps.float())
    assert base.denoising_end == 0.5 and refined.img2img.denoising_start == 0.5
    torch.testing.assert_close(refined.init_latents, base.steps[-1].latents)  # the refiner starts where the base ended
    assert refined.pipeline == "StableDiffusionXLImg2ImgPipeline"
    assert refined.tokens == refined.tokens_2 and refined.tokens.input_ids[-1] == 0  # its only tokenizer is OpenCLIP's
    assert refined.added_cond["time_ids"].tolist() == [[32.0, 32.0, 0.0, 0.0, 6.0]]  # aesthetic score 6
    assert refined.added_cond["negative_time_ids"][0, -1] == 2.5
    assert refined.attention.word_map("letter").shape == (4, 4)


def test_sd2_shows_openclip_padding_truthfully(pipes):
    trace = sdviz.generate(pipes["sd2"], PROMPT, steps=2, seed=0, attention=True)
    t = trace.tokens
    assert t.length == 10 and t.tokens[9] == "<|endoftext|>"
    assert t.input_ids[10:] == [0] * 67 and t.tokens[10:] == ["!"] * 67 and t.attention_mask[10:] == [0] * 67
    assert trace.attention.tokens[0][10] == "!" and [w for w, _ in trace.attention.words()][-1] == "background"
    with sdviz.capture(pipes["sd2"]) as cap:  # rebuilt from the ids the encoder saw: the same view
        pipes["sd2"](PROMPT, num_inference_steps=2)
    assert cap.trace.tokens.input_ids == t.input_ids and cap.trace.tokens.attention_mask == t.attention_mask
    assert "67 padding positions (id 0 !, mask 0)" in render_report(trace)


def test_inpainting_keeps_the_mask(pipes):
    pipe = pipes["inpaint"]
    trace = sdviz.generate(pipe, PROMPT, steps=3, seed=0, image=INIT, mask_image=MASK, strength=1.0)
    assert trace.pipeline == "StableDiffusionInpaintPipeline" and trace.img2img.strength == 1.0
    expected = torch.from_numpy(np.asarray(MASK) >= 128).float()
    torch.testing.assert_close(trace.mask, expected)  # binarised at image size, 1 = repainted
    with sdviz.capture(pipe) as cap:  # without the mask image: the mask channel the UNet saw, at latent size
        pipe(PROMPT, image=INIT, mask_image=MASK, num_inference_steps=2)
    assert cap.trace.mask.shape == (4, 4)
    torch.testing.assert_close(cap.trace.mask, torch.nn.functional.interpolate(expected[None, None], size=(4, 4))[0, 0])
    noise = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(7))
    for seed in (0, 99):  # the given noise, not the seed's (the seed still samples the masked image's latents)
        a = sdviz.generate(pipe, PROMPT, steps=2, seed=seed, image=INIT, mask_image=MASK, strength=1.0, latents=noise)
        torch.testing.assert_close(a.init_latents, noise * pipe.scheduler.init_noise_sigma)


def test_inpainting_with_a_text_to_image_model(embedded_pipe, pipes):
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=2, image=INIT.resize((64, 64)), mask_image=MASK.resize((64, 64)))
    assert trace.pipeline == "StableDiffusionInpaintPipeline" and trace.mask.shape == (64, 64)
    assert type(embedded_pipe).__name__ == "StableDiffusionPipeline"
    xl = sdviz.generate(pipes["sdxl"], PROMPT, steps=2, image=INIT, mask_image=MASK, attention=True)
    assert xl.pipeline == "StableDiffusionXLInpaintPipeline" and xl.mask.shape == (32, 32)
    assert xl.tokens_2 is not None and xl.added_cond["time_ids"].shape == (1, 6)
    img2img = sdviz.generate(pipes["sdxl"], PROMPT, steps=4, image=INIT, strength=0.5)
    assert img2img.pipeline == "StableDiffusionXLImg2ImgPipeline" and len(img2img.steps) == 2


def test_latents_start_text_to_image(embedded_pipe):
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    a = sdviz.generate(embedded_pipe, PROMPT, steps=2, seed=0, latents=noise, scheduler="ddim")
    b = sdviz.generate(embedded_pipe, PROMPT, steps=2, seed=5, latents=noise, scheduler="ddim")
    assert torch.equal(a.init_latents, noise)  # DDIM's initial noise sigma is 1
    assert torch.equal(a.steps[-1].latents, b.steps[-1].latents) and a.image.tobytes() == b.image.tobytes()
    seeded = sdviz.generate(embedded_pipe, PROMPT, steps=2, seed=0, scheduler="ddim")
    assert not torch.equal(seeded.init_latents, noise)
