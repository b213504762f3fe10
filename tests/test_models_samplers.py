"""Our DDPM and DDIM samplers against diffusers' schedulers on Stable Diffusion's configuration."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from sdviz.models import DDIMSampler, DDPMSampler, SamplerConfig
from sdviz.train.architecture import SCHEDULER_CONFIG

TOL = 1e-5


def _fake_eps(x, t):
    """A deterministic stand-in for the UNet that depends on both inputs."""
    return torch.tanh(x * 0.7 + t / 1000.0)


def _run(ours, theirs, steps, our_kwargs, their_kwargs, seed=0):
    ours.set_timesteps(steps)
    theirs.set_timesteps(steps)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    xa, xb = x0.clone(), x0.clone()
    ga, gb = torch.Generator().manual_seed(seed + 1), torch.Generator().manual_seed(seed + 1)
    for t in theirs.timesteps:
        a = ours.step(_fake_eps(xa, t), t, xa, generator=ga, **our_kwargs)
        b = theirs.step(_fake_eps(xb, t), t, xb, generator=gb, **their_kwargs)
        assert (a.pred_original_sample - b.pred_original_sample).abs().max() <= TOL, int(t)
        assert (a.prev_sample - b.prev_sample).abs().max() <= TOL, int(t)
        # compare the steps, not the drift of two trajectories: continue both from the reference
        xa, xb = b.prev_sample.clone(), b.prev_sample.clone()
    return xb


@pytest.mark.parametrize("steps", [1, 10, 50, 999])
def test_ddpm_matches_diffusers(steps):
    theirs = DDPMScheduler.from_config(SCHEDULER_CONFIG)
    assert theirs.config.variance_type == "fixed_small" and not theirs.config.clip_sample
    ours = DDPMSampler(SamplerConfig.from_diffusers_config(theirs.config))
    assert torch.allclose(ours.alphas_cumprod, theirs.alphas_cumprod, atol=1e-7)
    _run(ours, theirs, steps, {}, {})


@pytest.mark.parametrize(("steps", "eta"), [(1, 0.0), (20, 0.0), (50, 0.0), (20, 1.0), (25, 0.3)])
def test_ddim_matches_diffusers(steps, eta):
    theirs = DDIMScheduler.from_config(SCHEDULER_CONFIG)
    assert not theirs.config.set_alpha_to_one and theirs.config.timestep_spacing == "leading"
    ours = DDIMSampler(SamplerConfig.from_diffusers_config(theirs.config))
    _run(ours, theirs, steps, {"eta": eta}, {"eta": eta})


def test_ddpm_noise_can_be_passed_explicitly():
    s = DDPMSampler()
    s.set_timesteps(10)
    x, eps, noise = torch.randn(3, 1, 4, 4).unbind(0)
    t = int(s.timesteps[3])
    a = s.step(eps, t, x, noise=noise).prev_sample
    b = s.step(eps, t, x, noise=torch.zeros_like(noise)).prev_sample
    assert not torch.allclose(a, b)
    # x_{t-1} = mean + sqrt(beta-tilde) * noise: the difference is the noise scaled by the posterior std
    ratio = (a - b) / noise
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), atol=1e-5) and ratio.flatten()[0] > 0


def test_ddim_eta0_is_deterministic_and_add_noise_inverts():
    s = DDIMSampler()
    s.set_timesteps(20)
    x0, noise = torch.randn(2, 1, 4, 8, 8).unbind(0)
    t = int(s.timesteps[0])
    xt = s.add_noise(x0, noise, t)
    theirs = DDIMScheduler.from_config(SCHEDULER_CONFIG)
    assert torch.allclose(xt, theirs.add_noise(x0, noise, torch.tensor([t])), atol=1e-6)
    # given the true noise, the predicted x0 is the clean sample
    step = s.step(noise, t, xt)
    assert torch.allclose(step.pred_original_sample, x0, atol=1e-4)
    assert torch.equal(step.prev_sample, s.step(noise, t, xt).prev_sample)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="clip_sample=True is not supported"):
        SamplerConfig.from_diffusers_config({**SCHEDULER_CONFIG, "clip_sample": True})
    with pytest.raises(ValueError, match="beta_schedule 'cosine' not supported"):
        SamplerConfig(beta_schedule="cosine")
    with pytest.raises(ValueError, match=r"call set_timesteps\(num_inference_steps\) before step"):
        DDIMSampler().step(torch.zeros(1), 981, torch.zeros(1))
    with pytest.raises(ValueError, match=r"num_inference_steps must be in \[1, 1000\]"):
        DDPMSampler().set_timesteps(0)
