"""An exact epsilon oracle for a point-mass data distribution: what a scheduler must denoise to be listed."""

import inspect
import math

import torch

from sdviz import schedulers

SD_SIGMAS = schedulers.forward_process("scaled_linear").sigmas  # SD 1.5's training noise levels, t = 0..999


def sd_sigma(t: float) -> float:
    """SD's training sigma at a (possibly fractional) timestep, linear in sigma between integers."""
    lo = min(int(math.floor(t)), 998)
    w = t - lo
    return float(SD_SIGMAS[lo] * (1 - w) + SD_SIGMAS[lo + 1] * w)


def oracle_run(sched, x0, eps0, generator=None, sigma0=None):
    """Sample with an exact epsilon oracle for the point mass at x0; return the result and each UNet input.

    The run starts from pure noise eps0 * init_noise_sigma, or with `sigma0` on the exact trajectory
    x0 + sigma0 * eps0 (scaled by 1 / sqrt(sigma0^2 + 1) for schedulers whose samples are not).
    """
    sched.set_timesteps(8)
    x = eps0 * sched.init_noise_sigma
    if sigma0 is not None:
        x = x0 + sigma0 * eps0
        if float(sched.init_noise_sigma) == 1.0:
            x = x / math.sqrt(1 + sigma0**2)
    accepted = set(inspect.signature(sched.step).parameters)
    kw = {"eta": 0.0} if "eta" in accepted else {}
    if "generator" in accepted:
        kw["generator"] = generator
    inputs = []
    for t in sched.timesteps:
        x_in = sched.scale_model_input(x, t)
        assert 0 <= float(t) < 1000, f"timestep {float(t)} outside SD's training range"
        a = 1 / (1 + sd_sigma(float(t)) ** 2)  # alpha_bar the UNet is told through t
        eps = (x_in - a**0.5 * x0) / (1 - a) ** 0.5
        inputs.append(x_in)
        x = sched.step(eps, t, x, **kw).prev_sample
    return x, inputs


def points(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 4, 16, 16, generator=g, dtype=torch.float64).clamp(-2, 2), torch.randn(
        1, 4, 16, 16, generator=g, dtype=torch.float64
    )
