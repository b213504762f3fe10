"""Which diffusers schedulers the registry lists: exactly those that denoise for an SD UNet; aliases."""

import diffusers
import pytest
import torch
from diffusers.schedulers import KarrasDiffusionSchedulers
from scheduler_oracle import SD_SIGMAS, oracle_run, points

from sdviz import schedulers
from sdviz.schedules import SD15_SCHEDULER_CONFIG as SCHEDULER_CONFIG

NAMES = schedulers.names()
DETERMINISTIC = [n for n in NAMES if not schedulers.describe(n).stochastic]


def test_names_cover_karras_schedulers_but_edm():
    karras = {k.name for k in KarrasDiffusionSchedulers}
    assert NAMES == sorted(NAMES)
    assert karras - set(NAMES) == {"EDMEulerScheduler"}
    assert len(karras & set(NAMES)) == 14
    for name in NAMES:
        assert issubclass(getattr(diffusers, name), diffusers.SchedulerMixin)


def test_names_are_exactly_the_schedulers_that_denoise_for_an_sd_unet():
    """Run every scheduler class diffusers ships with SD 1.5's config and an exact epsilon oracle."""
    x0, eps0 = points()
    floor = float(SD_SIGMAS[0])  # 0.0292, the least noise SD was trained at; DDIM-like samplers stop there
    usable = set()
    for n in dir(diffusers):
        cls = getattr(diffusers, n)
        if not (n.endswith("Scheduler") and isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
            continue
        try:
            out, _ = oracle_run(cls.from_config(SCHEDULER_CONFIG), x0, eps0, torch.Generator().manual_seed(1))
        except (TypeError, AttributeError, ValueError, KeyError, IndexError, AssertionError):
            continue  # does not build from SD's config, does not speak the pipeline's protocol, or leaves the grid
        if (out - x0).abs().max() <= 6 * floor:
            usable.add(n)
    assert usable == set(NAMES)


def test_edm_euler_tells_the_unet_the_wrong_noise_level():
    sched = diffusers.EDMEulerScheduler.from_config(SCHEDULER_CONFIG)
    sched.set_timesteps(20)
    # EDM hands the UNet c_noise = log(sigma) / 4, not a timestep of SD's 0..999 grid
    assert sched.timesteps.max() < 2 and sched.timesteps.min() < 0
    assert sched.sigmas[0] == pytest.approx(80.0) and float(SD_SIGMAS[-1]) == pytest.approx(14.6146, abs=1e-3)
    with pytest.raises(ValueError, match="EDMEulerScheduler is a diffusers scheduler, but it feeds the UNet EDM's c_noise.*use 'euler' instead"):
        schedulers.make("EDMEulerScheduler")
    with pytest.raises(ValueError, match="FlowMatchEulerDiscreteScheduler is a diffusers scheduler, but it does not drive"):
        schedulers.describe("FlowMatchEulerDiscreteScheduler")


def test_cogvideox_ddim_shifts_the_noise_levels():
    x0, eps0 = points()
    ddim, _ = oracle_run(diffusers.DDIMScheduler.from_config(SCHEDULER_CONFIG), x0, eps0)
    cog, inputs = oracle_run(diffusers.CogVideoXDDIMScheduler.from_config(SCHEDULER_CONFIG), x0, eps0)
    # with the SNR shift the input of the second UNet call is not at the noise level its timestep says
    assert (cog - x0).abs().max() > 1.5 * (ddim - x0).abs().max()


def test_aliases_resolve_to_a_class_and_settings():
    a = schedulers.aliases()
    assert a["dpm++2m_karras"] == (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    )
    for alias in ["euler", "euler_a", "heun", "ddim", "ddpm", "pndm", "lms", "dpm++2m", "dpm++2m_sde", "dpm++sde",
                  "dpm2", "dpm2_a", "unipc", "deis"]:
        cls, settings = a[alias]
        assert cls in NAMES
        made = schedulers.make(alias)
        assert type(made).__name__ == cls
        for k, v in settings.items():
            assert made.config[k] == v
    assert schedulers.make("dpm++2m_karras").config.use_karras_sigmas is True
    assert schedulers.describe("dpm++2m_sde").stochastic and not schedulers.describe("dpm++2m").stochastic
    assert type(schedulers.make("Euler")).__name__ == "EulerDiscreteScheduler"  # case-insensitive fallback


@pytest.mark.parametrize("name", NAMES)
def test_oracle_sampling_ends_at_the_data(name):
    """With an exact epsilon model for a point mass, every scheduler must end at that point."""
    x0, eps0 = points()
    sched = schedulers.make(name)
    out, _ = oracle_run(sched, x0, eps0, torch.Generator().manual_seed(1))
    s = schedulers.schedule(name, 8)
    assert (out - x0).abs().max() <= 6 * s.final_sigma + 1e-4
    if name in DETERMINISTIC:
        # the exact trajectory is x0 + sigma eps0 (up to scale): fit sigma at each UNet call
        sig = s.sigmas
        _, inputs = oracle_run(schedulers.make(name), x0, eps0, sigma0=float(sig[0]))
        basis = torch.stack([x0.flatten(), eps0.flatten()], 1)
        for i, x_in in enumerate(inputs):
            a, b = torch.linalg.lstsq(basis, x_in.flatten()[:, None]).solution.flatten().tolist()
            assert b / a == pytest.approx(float(sig[i]), rel=5e-3), (i, b / a, float(sig[i]))


@pytest.mark.parametrize("name", NAMES)
def test_stochastic_flag_matches_behaviour(name):
    x0, eps0 = points()
    runs = []
    for seed in (1, 2):
        torch.manual_seed(seed)  # DPMSolverSDE's Brownian tree seeds itself from the global generator
        sched = schedulers.make(name, noise_sampler_seed=seed) if name == "DPMSolverSDEScheduler" else schedulers.make(name)
        runs.append(oracle_run(sched, x0, eps0, torch.Generator().manual_seed(seed))[1][-1])
    differs = not torch.equal(runs[0], runs[1])
    assert differs == schedulers.describe(name).stochastic


def test_without_torchsde_the_sde_scheduler_is_off_and_says_how_to_install(monkeypatch):
    class Placeholder:  # what diffusers exports in place of a class whose backend is missing
        pass

    monkeypatch.setattr(diffusers, "DPMSolverSDEScheduler", Placeholder)
    assert "DPMSolverSDEScheduler" not in schedulers.names() and "EulerDiscreteScheduler" in schedulers.names()
    for name in ("DPMSolverSDEScheduler", "dpm++sde"):
        with pytest.raises(ValueError, match=r'pip install "sdviz\[sde\]"'):
            schedulers.make(name)
    monkeypatch.setattr(diffusers, "LMSDiscreteScheduler", Placeholder)  # diffusers offers LMS only with scipy
    with pytest.raises(ValueError, match="LMSDiscreteScheduler needs the scipy package"):
        schedulers.make("lms")
