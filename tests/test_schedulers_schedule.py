"""schedule() and forward_process(): timesteps and sigmas without a UNet, and the training noise schedule."""

import logging
import math
import warnings

import diffusers
import pytest
import torch
from scheduler_oracle import SD_SIGMAS

from sdviz import schedulers
from sdviz.schedules import SD15_SCHEDULER_CONFIG as SCHEDULER_CONFIG


def test_euler_schedule_on_sd15_config():
    assert "timestep_spacing" not in SCHEDULER_CONFIG
    s = schedulers.schedule("EulerDiscreteScheduler", 50)
    assert s.num_unet_evals == 50 and s.order == 1 and not s.stochastic
    assert float(s.sigmas[0]) == pytest.approx(14.6146, abs=1e-3)
    assert float(s.sigmas[-1]) == pytest.approx(0.0292, abs=1e-4) and s.final_sigma == 0.0
    assert torch.all(s.sigmas[:-1] > s.sigmas[1:])
    leading = schedulers.schedule("EulerDiscreteScheduler", 50, timestep_spacing="leading")
    assert float(leading.sigmas[0]) == pytest.approx(13.12, abs=5e-3)


@pytest.mark.parametrize("name", ["euler", "dpm++2m", "heun", "lms"])
def test_karras_sigmas_follow_eq5(name):
    s = schedulers.schedule(name, 50, use_karras_sigmas=True)
    smax, smin = float(SD_SIGMAS[-1]), float(SD_SIGMAS[0])
    rho = 7.0
    ramp = torch.linspace(0, 1, 50, dtype=torch.float64)
    eq5 = (smax ** (1 / rho) + ramp * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho  # Karras et al. (2022) eq. 5
    sig = s.sigmas
    if name == "heun":  # each sigma but the first is evaluated twice
        sig = torch.cat([sig[:1], sig[1::2]])
    torch.testing.assert_close(sig, eq5, rtol=1e-4, atol=1e-6)
    plain = schedulers.schedule(name, 50).sigmas
    assert (s.sigmas < 1).sum() > (plain < 1).sum()  # denser near sigma_min


def test_second_order_schedules_count_every_unet_call():
    heun = schedulers.schedule("heun", 10)
    assert heun.num_unet_evals == 19 and len(heun.sigmas) == 19
    assert torch.equal(heun.timesteps[1::2], heun.timesteps[2::2])  # repeated entries, one per UNet call
    dpm2 = schedulers.schedule("dpm2", 10)
    assert dpm2.num_unet_evals == 19
    # the second call of each step sits at the geometric midpoint of sigma (log-sigma midpoint)
    s0, s1 = float(dpm2.sigmas[0]), float(dpm2.sigmas[2])
    assert float(dpm2.sigmas[1]) == pytest.approx(math.sqrt(s0 * s1), rel=1e-4)
    pndm = schedulers.schedule("pndm", 10)
    assert pndm.num_unet_evals == 11 and pndm.final_sigma == pytest.approx(0.0292, abs=1e-4)


def test_schedule_is_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logging.getLogger("diffusers").addHandler(handler := _Fail())
        try:
            schedulers.schedule("dpm++2s", 9)
            schedulers.schedule("dpm++sde", 4)
        finally:
            logging.getLogger("diffusers").removeHandler(handler)


class _Fail(logging.Handler):
    def emit(self, record):
        raise AssertionError(f"logged: {record.getMessage()}")


def test_schedule_refuses_bad_steps():
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        schedulers.schedule("euler", 0)


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_forward_process_matches_diffusers(beta_schedule):
    start, end = (1e-4, 0.02) if beta_schedule == "linear" else (0.00085, 0.012)
    fp = schedulers.forward_process(beta_schedule, 1000, start, end)
    ref = diffusers.DDPMScheduler(beta_schedule=beta_schedule, beta_start=start, beta_end=end).alphas_cumprod
    torch.testing.assert_close(fp.alphas_cumprod, ref.double(), rtol=1e-5, atol=1e-7)
    assert torch.all(fp.snr[:-1] > fp.snr[1:])
    torch.testing.assert_close(fp.snr, fp.alphas_cumprod / (1 - fp.alphas_cumprod))
    if beta_schedule == "squaredcos_cap_v2":
        t = 500
        f = lambda u: math.cos((u / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        assert float(fp.alphas_cumprod[t - 1]) == pytest.approx(f(t) / f(0), rel=1e-6)
    with pytest.raises(ValueError, match="did you mean 'scaled_linear'"):
        schedulers.forward_process("scaled_linaer")
