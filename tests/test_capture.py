import dataclasses

import diffusers
import numpy as np
import pytest
import torch

import sdviz
from sdviz.capturing import predict_x0

PROMPT = "a red letter A on a blue background"
SINGLE = ["EulerDiscreteScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "PNDMScheduler",
          "EulerAncestralDiscreteScheduler", "LMSDiscreteScheduler", "UniPCMultistepScheduler", "DDPMScheduler",
          "DEISMultistepScheduler", "DPMSolverSinglestepScheduler"]
SECOND_ORDER = ["HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler"]


def _sched(pipe, name, **kw):
    return getattr(diffusers, name).from_config(pipe.scheduler.config, **kw)


def _plain(pipe, scheduler, steps=6, seed=0, **kw):
    old = pipe.scheduler
    pipe.scheduler = scheduler
    try:
        g = torch.Generator().manual_seed(seed)
        return np.asarray(pipe(PROMPT, num_inference_steps=steps, generator=g, **kw).images[0])
    finally:
        pipe.scheduler = old


def _hooks(module):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def _assert_restored(pipe):
    assert "step" not in pipe.scheduler.__dict__
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        assert _hooks(part) == 0


@pytest.mark.parametrize("name", ["EulerDiscreteScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler",
                                  "HeunDiscreteScheduler", "EulerAncestralDiscreteScheduler"])
def test_capture_leaves_image_bit_identical(embedded_pipe, name):
    plain = _plain(embedded_pipe, _sched(embedded_pipe, name))
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=6, scheduler=_sched(embedded_pipe, name), seed=0)
    np.testing.assert_array_equal(np.asarray(trace.image), plain)
    _assert_restored(embedded_pipe)


@pytest.mark.parametrize("name", SINGLE + SECOND_ORDER)
def test_steps_timesteps_sigmas_match_the_scheduler(embedded_pipe, name):
    sched = _sched(embedded_pipe, name)
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=5, scheduler=sched, seed=0)
    assert len(trace.steps) == len(sched.timesteps) == trace.unet_evals
    assert trace.num_inference_steps == 5
    torch.testing.assert_close(trace.timesteps, sched.timesteps.float(), rtol=0, atol=1e-4)
    if getattr(sched, "sigmas", None) is not None and len(sched.sigmas) > len(sched.timesteps):
        torch.testing.assert_close(trace.sigmas, sched.sigmas[: len(trace.steps)].float(), rtol=1e-5, atol=1e-5)
    else:
        ab = sched.alphas_cumprod[sched.timesteps.long()]
        torch.testing.assert_close(trace.sigmas, ((1 - ab) / ab).sqrt().float(), rtol=1e-5, atol=1e-5)
    assert [s.index for s in trace.steps] == list(range(len(trace.steps)))
    assert all(s.x0 is not None and s.latents is not None for s in trace.steps)


@pytest.mark.parametrize("name", SINGLE + SECOND_ORDER)
def test_last_x0_decodes_close_to_the_image(embedded_pipe, name):
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=8, scheduler=_sched(embedded_pipe, name), seed=0)
    vae = embedded_pipe.vae
    with torch.no_grad():
        x = vae.decode(trace.steps[-1].x0 / vae.config.scaling_factor).sample
    decoded = (x / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    image = np.asarray(trace.image) / 255.0
    assert np.abs(decoded - image).mean() < 0.04  # DDIM, PNDM, DEIS stop at sigma 0.029, not 0


@pytest.mark.parametrize("name", ["EulerDiscreteScheduler", "DDIMScheduler", "HeunDiscreteScheduler"])
def test_x0_from_scheduler_equals_computed(embedded_pipe, name):
    sched = _sched(embedded_pipe, name)
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=6, scheduler=sched, seed=0)
    karras = float(sched.init_noise_sigma) > 1.0
    samples = [trace.init_latents] + [s.latents for s in trace.steps[:-1]]
    for step, sample in zip(trace.steps, samples, strict=True):
        if name == "HeunDiscreteScheduler" and step.order_stage == 1:
            continue  # the corrector's input is the predictor's output, checked on first stages only
        ours = predict_x0(sample, step.noise_pred, step.sigma, prediction_type="epsilon", karras_scale=karras)
        torch.testing.assert_close(ours, step.x0, rtol=1e-5, atol=1e-5)


def test_dpm_solver_x0_is_computed(embedded_pipe):
    # DPMSolverMultistep returns no pred_original_sample: sdviz derives it, and it lands near the final latents
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=10,
                           scheduler=_sched(embedded_pipe, "DPMSolverMultistepScheduler"), seed=0)
    err = [(s.x0 - trace.steps[-1].latents).abs().mean().item() for s in trace.steps]
    assert err[-1] < err[0] / 5


def test_noise_predictions_split_and_guide(embedded_pipe):
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=4, guidance_scale=5.0, seed=1,
                           scheduler=_sched(embedded_pipe, "EulerDiscreteScheduler"))
    for s in trace.steps:
        guided = s.noise_pred_uncond + 5.0 * (s.noise_pred_text - s.noise_pred_uncond)
        torch.testing.assert_close(s.noise_pred, guided, rtol=1e-5, atol=1e-5)
    assert trace.negative_tokens is not None and trace.negative_tokens.length == 2


def test_guidance_off_has_no_uncond(embedded_pipe):
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=3, guidance_scale=1.0, seed=0)
    assert all(s.noise_pred_uncond is None for s in trace.steps)
    torch.testing.assert_close(trace.steps[0].noise_pred, trace.steps[0].noise_pred_text)


def test_trace_metadata(embedded_pipe):
    long_prompt = " ".join(["cat"] * 90)
    trace = sdviz.generate(embedded_pipe, long_prompt, steps=3, seed=7, guidance_scale=3.0, negative_prompt="blurry")
    assert trace.prompt == long_prompt and trace.seed == 7 and trace.guidance_scale == 3.0
    assert trace.negative_prompt == "blurry" and trace.negative_tokens.tokens[1] == "blurry</w>"
    assert len(trace.tokens.truncated) == 15 and trace.tokens.input_ids[-1] == 49407
    assert trace.model == "sdviz/embedded" and trace.scheduler == "PNDMScheduler"
    assert trace.scheduler_config["beta_schedule"] == "scaled_linear"
    assert (trace.height, trace.width) == (64, 64) and trace.complete
    assert trace.init_latents.shape == (1, 4, 8, 8)


def test_generate_puts_the_scheduler_back(embedded_pipe):
    before = embedded_pipe.scheduler
    sdviz.generate(embedded_pipe, PROMPT, steps=2, scheduler=_sched(embedded_pipe, "DDIMScheduler"))
    assert embedded_pipe.scheduler is before


def test_capture_context_records_a_direct_call(embedded_pipe):
    with sdviz.capture(embedded_pipe) as cap:
        out = embedded_pipe(PROMPT, num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    trace = cap.trace
    assert trace.prompt == PROMPT.lower() and trace.tokens.length == 10
    assert len(trace.steps) == 5 and trace.num_inference_steps == 4  # PNDM's PLMS evaluates step 0 twice
    np.testing.assert_array_equal(np.asarray(trace.image), np.asarray(out.images[0]))
    _assert_restored(embedded_pipe)


def test_keep_every_dtype(embedded_pipe):
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=7, seed=0, keep=["latents", "x0"], every=3,
                           dtype=torch.float16, scheduler=_sched(embedded_pipe, "EulerDiscreteScheduler"))
    kept = [s.index for s in trace.steps if s.latents is not None]
    assert kept == [0, 3, 6]
    assert all(s.noise_pred is None for s in trace.steps)
    assert trace.steps[0].latents.dtype == torch.float16
    assert len(trace.timesteps) == 7
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=6, seed=0, every=4,
                           scheduler=_sched(embedded_pipe, "EulerDiscreteScheduler"))
    assert [s.index for s in trace.steps if s.latents is not None] == [0, 4, 5]  # the last step is always kept


def test_bad_capture_options(embedded_pipe):
    with pytest.raises(ValueError, match="unknown keep entry.*choose from"):
        sdviz.capture(embedded_pipe, keep=["latent"])
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        sdviz.capture(embedded_pipe, every=0)
    with pytest.raises(TypeError, match="floating torch.dtype"):
        sdviz.capture(embedded_pipe, dtype=torch.int8)
    with pytest.raises(ValueError, match=r"steps must be an int in \[1, 1000\]"):
        sdviz.generate(embedded_pipe, PROMPT, steps=0)


class Boom(RuntimeError):
    pass


def _raise_at(n, exc):
    def cb(pipe, i, t, kwargs):
        if i == n:
            raise exc
        return kwargs

    return cb


def test_exception_restores_and_keeps_steps(embedded_pipe):
    with pytest.raises(Boom):
        with sdviz.capture(embedded_pipe) as cap:
            embedded_pipe(PROMPT, num_inference_steps=6, callback_on_step_end=_raise_at(2, Boom()))
    _assert_restored(embedded_pipe)
    assert not cap.trace.complete and len(cap.trace.steps) == 3
    assert "Boom" in cap.trace.error


def test_keyboard_interrupt_keeps_partial_trace(embedded_pipe):
    with pytest.raises(KeyboardInterrupt):
        with sdviz.capture(embedded_pipe) as cap:
            embedded_pipe(PROMPT, num_inference_steps=6, callback_on_step_end=_raise_at(3, KeyboardInterrupt()))
    _assert_restored(embedded_pipe)
    assert not cap.trace.complete and len(cap.trace.steps) == 4
    assert cap.trace.steps[3].latents is not None


def test_a_second_run_in_one_capture_is_refused_and_the_first_kept(embedded_pipe):
    with sdviz.capture(embedded_pipe) as alone:
        embedded_pipe(PROMPT, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    with sdviz.capture(embedded_pipe) as cap:
        embedded_pipe(PROMPT, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
        with pytest.raises(sdviz.UsageError, match="already holds a finished run; use one .* block per run"):
            embedded_pipe("a green digit 3 on a white background", num_inference_steps=5)
    _assert_restored(embedded_pipe)
    assert cap.trace.complete and cap.trace.error is None
    same = [dataclasses.replace(t, wall_time=None) for t in (cap.trace, alone.trace)]
    assert same[0] == same[1]  # the first run, whole, and nothing of the second


def test_generate_interrupted_attaches_trace(embedded_pipe, monkeypatch):
    calls = {"n": 0}
    original = embedded_pipe.unet.forward

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(embedded_pipe.unet, "forward", flaky)
    with pytest.raises(KeyboardInterrupt) as e:
        sdviz.generate(embedded_pipe, PROMPT, steps=5, seed=0)
    monkeypatch.undo()
    assert e.value.trace.complete is False and len(e.value.trace.steps) == 2
    assert e.value.trace.prompt == PROMPT
    _assert_restored(embedded_pipe)


def test_same_seed_gives_bit_identical_traces(embedded_pipe):
    kw = dict(steps=5, seed=3, scheduler=_sched(embedded_pipe, "EulerAncestralDiscreteScheduler"))
    a = sdviz.generate(embedded_pipe, PROMPT, **kw)
    b = sdviz.generate(embedded_pipe, PROMPT, **kw)
    a.wall_time = b.wall_time = None
    assert a == b
    c = sdviz.generate(embedded_pipe, PROMPT, **{**kw, "seed": 4})
    c.wall_time = None
    assert not a == c


def test_img2img(embedded_pipe):
    init = sdviz.generate(embedded_pipe, PROMPT, steps=3, seed=0).image
    trace = sdviz.generate(embedded_pipe, "a green digit 7 on a white background", image=init, strength=0.5,
                           steps=10, seed=0, scheduler=_sched(embedded_pipe, "DDIMScheduler"))
    assert len(trace.steps) == 5 and trace.img2img is not None and trace.img2img.strength == 0.5
    assert trace.timesteps[0] < 600 and trace.image.size == (64, 64)
    with pytest.raises(ValueError, match="strength must be in"):
        sdviz.generate(embedded_pipe, PROMPT, image=init, strength=1.5)


def test_batch_and_non_square(embedded_pipe):
    trace = sdviz.generate(embedded_pipe, [PROMPT, "a black digit 3 on a yellow background"], steps=3,
                           seed=0, height=48, width=80)
    assert len(trace.images) == 2 and trace.images[1].size == (80, 48)
    assert trace.steps[0].latents.shape == (2, 4, 6, 10)
    assert trace.prompts[1].startswith("a black digit")


@pytest.mark.parametrize("order", ["nested", "out of order"])
@pytest.mark.parametrize("attention", [False, True])
def test_two_captures_end_in_any_order(embedded_pipe, order, attention):
    sched = _sched(embedded_pipe, "EulerDiscreteScheduler")
    embedded_pipe.scheduler = sched
    kw = dict(num_inference_steps=2, generator=torch.Generator().manual_seed(0))

    def two():
        a = sdviz.capture(embedded_pipe, attention=attention, prompt=PROMPT).__enter__()
        b = sdviz.capture(embedded_pipe, attention=attention, prompt=PROMPT).__enter__()
        return (b, a) if order == "nested" else (a, b)

    first, second = two()
    embedded_pipe(PROMPT, **kw)  # both record this run
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    _assert_restored(embedded_pipe)
    assert _no_recorders(embedded_pipe)
    assert len(first.trace.steps) == 2 == len(second.trace.steps)
    assert first.trace.steps[1].latents.equal(second.trace.steps[1].latents)
    first, second = two()
    first.__exit__(None, None, None)  # ends before the run: the other keeps its hooks
    embedded_pipe(PROMPT, **kw)
    second.__exit__(None, None, None)
    _assert_restored(embedded_pipe)
    assert _no_recorders(embedded_pipe)
    assert not first.trace.steps and len(second.trace.steps) == 2
    assert (second.trace.attention is not None) == attention


@pytest.mark.parametrize("order", ["nested", "out of order"])
def test_two_captures_restore_everything_on_an_exception(embedded_pipe, order):
    a = sdviz.capture(embedded_pipe, attention=True).__enter__()
    b = sdviz.capture(embedded_pipe, attention=True).__enter__()
    first, second = (b, a) if order == "nested" else (a, b)
    with pytest.raises(Boom):
        try:
            embedded_pipe(PROMPT, num_inference_steps=3, callback_on_step_end=_raise_at(1, Boom()))
        except Boom as e:
            first.__exit__(Boom, e, None)
            second.__exit__(Boom, e, None)
            raise
    _assert_restored(embedded_pipe)
    assert _no_recorders(embedded_pipe)
    assert not first.trace.complete and not second.trace.complete


def test_a_capture_that_fails_to_start_leaves_nothing(embedded_pipe):
    with pytest.raises(ValueError, match="head"):
        sdviz.capture(embedded_pipe, attention={"heads": 99}).__enter__()
    _assert_restored(embedded_pipe)
    assert _no_recorders(embedded_pipe)


def _no_recorders(pipe):
    return not any(type(p).__name__ == "MapRecorder" for p in pipe.unet.attn_processors.values())
