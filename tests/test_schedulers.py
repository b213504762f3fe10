import inspect
import logging
import math
import re
import warnings

import diffusers
import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler
from diffusers.schedulers import KarrasDiffusionSchedulers

from sdviz import schedulers
from sdviz.cli import main
from sdviz.schedules import SD15_SCHEDULER_CONFIG as SCHEDULER_CONFIG

NAMES = schedulers.names()
DETERMINISTIC = [n for n in NAMES if not schedulers.describe(n).stochastic]
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


# --- the registry --------------------------------------------------------------------------------------------


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


# --- describe ------------------------------------------------------------------------------------------------


def test_describe_lists_every_constructor_parameter():
    for name in NAMES:
        info = schedulers.describe(name)
        cls = getattr(diffusers, name)
        expected = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
        assert [p.name for p in info.params] == expected
        for p in info.params:
            assert p.meaning and p.type, (name, p.name)
            if p.allowed is not None:
                assert p.default in p.allowed, (name, p.name, p.default, p.allowed)
        assert info.summary and info.order >= 1 and info.evals_per_step in (1, 2)
    heun = schedulers.describe("heun")
    assert heun.evals_per_step == 2 and heun.order == 2 and "heun_karras" in heun.aliases
    k = heun.param("use_karras_sigmas")
    assert (k.type, k.default, k.allowed) == ("bool", False, (False, True)) and "Karras" in k.meaning
    assert schedulers.describe("euler").param("beta_schedule").allowed == ("linear", "scaled_linear", "squaredcos_cap_v2")
    assert schedulers.describe("dpm++2m").param("algorithm_type").allowed == (
        "dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++")
    assert schedulers.describe("unipc").param("sigma_max").type == "float | None"  # diffusers' hint says bool
    assert schedulers.describe("unipc").param("solver_p").type == "SchedulerMixin | None"
    assert schedulers.validate("unipc", solver_p=None, sigma_max=14.6) == {"solver_p": None, "sigma_max": 14.6}
    assert schedulers.describe("lms").order == 4 and schedulers.describe("dpm++2m_karras").settings["use_karras_sigmas"]


def _values_in_source(cls, param):
    """Every string the class's module compares `param` with (==, !=, in [...])."""
    src = inspect.getsource(inspect.getmodule(cls))
    found = set(re.findall(rf"\b{param}\s*[!=]=\s*\"([^\"]+)\"", src))
    for group in re.findall(rf"\b{param}\s+(?:not\s+)?in\s+\[([^\]]+)\]", src):
        found |= set(re.findall(r"\"([^\"]+)\"", group))
    return found


def test_curated_allowed_values_match_the_installed_source():
    from sdviz.schedulers.params import ALLOWED, ALLOWED_BY_CLASS

    checked = 0
    for name in NAMES:
        for p in schedulers.describe(name).params:
            curated = ALLOWED_BY_CLASS.get((name, p.name)) or (ALLOWED.get(p.name) if p.type.startswith("str") else None)
            if curated is None:
                continue
            found = _values_in_source(getattr(diffusers, name), p.name)
            if not found:  # LCM and TCD take timestep_spacing and never read it
                assert "unused" in p.meaning, (name, p.name)
                continue
            assert found == {v for v in curated if v is not None}, (name, p.name, found, curated)
            checked += 1
    assert checked > 30
    # where the table takes more than the hint, those values run
    for name, key, value in [("DDPMScheduler", "beta_schedule", "laplace"), ("HeunDiscreteScheduler", "beta_schedule", "exp"),
                             ("EulerDiscreteScheduler", "interpolation_type", "log_linear")]:
        schedulers.schedule(name, 4, **{key: value})


# --- validate / make / resolve -------------------------------------------------------------------------------


def test_diffusers_alone_accepts_a_misspelt_keyword():
    # what sdviz guards against: the typo is dropped without a word
    s = EulerDiscreteScheduler.from_config({**SCHEDULER_CONFIG, "use_karas_sigmas": True})
    assert s.config.use_karras_sigmas is False


def test_refuses_unknown_parameter_with_closest_match():
    with pytest.raises(ValueError, match=r"no parameter 'use_karas_sigmas' \(did you mean 'use_karras_sigmas'\?\)"):
        schedulers.make("euler", use_karas_sigmas=True)
    with pytest.raises(ValueError, match="it is a parameter of .*EulerDiscreteScheduler"):
        schedulers.validate("ddim", use_karras_sigmas=True)


def test_refuses_wrong_type():
    with pytest.raises(TypeError, match=r"use_karras_sigmas must be bool.*, got str 'yes'; use one of \[.*False, True\]"):
        schedulers.make("euler", use_karras_sigmas="yes")
    with pytest.raises(TypeError, match="num_train_timesteps must be int"):
        schedulers.make("euler", num_train_timesteps=1000.0)
    with pytest.raises(TypeError, match="beta_start must be float"):
        schedulers.validate("ddim", beta_start="0.001")
    assert schedulers.validate("ddim", beta_start=0) == {"beta_start": 0}  # an int is a fine float


def test_refuses_value_outside_allowed_set():
    with pytest.raises(ValueError, match=r"timestep_spacing='trailling' is not one of \['linspace', 'leading', 'trailing'\]"):
        schedulers.make("euler", timestep_spacing="trailling")
    with pytest.raises(ValueError, match="beta_schedule='cosine' is not one of"):
        schedulers.make("ddim", beta_schedule="cosine")
    with pytest.raises(ValueError, match=re.escape("algorithm_type='dpmsolver+' is not one of")):
        schedulers.make("dpm++2m", algorithm_type="dpmsolver+")
    with pytest.raises(ValueError, match="solver_type='midpoint' is not one of"):
        schedulers.make("deis", solver_type="midpoint")  # diffusers would silently switch it to logrho


def test_refuses_mutually_exclusive_options():
    with pytest.raises(ValueError, match=re.escape(
        "use_karras_sigmas (from the arguments) and use_exponential_sigmas (from the arguments) exclude each other")):
        schedulers.make("euler", use_karras_sigmas=True, use_exponential_sigmas=True)
    with pytest.raises(ValueError, match=r"use_karras_sigmas \(.*\) and use_beta_sigmas \(.*\) exclude each other"):
        schedulers.make("heun", use_karras_sigmas=True, use_beta_sigmas=True)
    with pytest.raises(ValueError, match=re.escape(
        "use_karras_sigmas (from the alias 'dpm++2m_karras') and use_lu_lambdas (from the arguments) exclude each "
        "other, turn on at most one; pass use_karras_sigmas=False")):
        schedulers.make("dpm++2m_karras", use_lu_lambdas=True)  # diffusers would silently use Karras
    with pytest.raises(ValueError, match=re.escape("use_karras_sigmas (from the base config) and use_exponential_sigmas "
                                                   "(from the arguments) exclude each other, turn on at most one; "
                                                   "pass use_karras_sigmas=False")):
        schedulers.make("euler", config={**SCHEDULER_CONFIG, "use_karras_sigmas": True}, use_exponential_sigmas=True)
    s = schedulers.make("euler", config={**SCHEDULER_CONFIG, "use_karras_sigmas": True},
                        use_karras_sigmas=False, use_exponential_sigmas=True)
    assert s.config.use_exponential_sigmas and not s.config.use_karras_sigmas
    with pytest.raises(ValueError, match="pass final_sigmas_type='sigma_min'"):
        schedulers.make("dpm++2m", algorithm_type="dpmsolver")
    assert schedulers.make("dpm++2m", algorithm_type="dpmsolver", final_sigmas_type="sigma_min").config.algorithm_type == "dpmsolver"


def test_refuses_unknown_scheduler_with_list_and_closest():
    with pytest.raises(ValueError, match=r"unknown scheduler 'eulr' \(did you mean 'euler'\?\); known: DDIMParallelScheduler, ") as e:
        schedulers.make("eulr")
    for name in NAMES:
        assert name in str(e.value)
    with pytest.raises(ValueError, match="did you mean 'HeunDiscreteScheduler'"):
        schedulers.describe("HeunDiscreteSchedular")
    with pytest.raises(TypeError, match="must be a str"):
        schedulers.describe(3)


def test_make_carries_the_base_config(embedded_pipe):
    sd = schedulers.make("euler")
    assert (sd.config.beta_schedule, sd.config.beta_end, sd.config.timestep_spacing) == ("scaled_linear", 0.012, "linspace")
    cfg = dict(embedded_pipe.scheduler.config)
    assert cfg["timestep_spacing"] == "leading"  # the embedded model's config says so, SD 1.5's has no key
    emb = schedulers.make("euler", config=cfg)
    assert emb.config.timestep_spacing == "leading" and emb.config.steps_offset == 1
    assert schedulers.make("euler", config=cfg, timestep_spacing="trailing").config.timestep_spacing == "trailing"
    assert schedulers.make("dpm++2s").config.lower_order_final  # the defaults diffusers corrects itself


def test_resolve_accepts_every_spec(embedded_pipe):
    cfg = embedded_pipe.scheduler.config
    assert schedulers.resolve(None, cfg) is None
    assert schedulers.resolve(embedded_pipe.scheduler, cfg) is embedded_pipe.scheduler
    a = schedulers.resolve("heun", cfg)
    b = schedulers.resolve(("heun", {"use_karras_sigmas": True}), cfg)
    c = schedulers.resolve({"name": "HeunDiscreteScheduler", "use_karras_sigmas": True}, cfg)
    d = schedulers.resolve(diffusers.HeunDiscreteScheduler, cfg)
    assert all(type(s).__name__ == "HeunDiscreteScheduler" for s in (a, b, c, d))
    assert b.config.use_karras_sigmas and c.config.use_karras_sigmas and not a.config.use_karras_sigmas
    assert a.config.timestep_spacing == "leading"
    with pytest.raises(ValueError, match="did you mean 'use_karras_sigmas'"):
        schedulers.resolve(("heun", {"use_karras_sigma": True}), cfg)
    with pytest.raises(TypeError, match=r"a \(name, \{params\}\) tuple"):
        schedulers.resolve(42, cfg)
    # DPM++ SDE's noise comes from noise_sampler_seed, not the pipeline's generator: the run's seed goes there
    assert schedulers.resolve("dpm++sde", cfg, seed=7).config.noise_sampler_seed == 7
    assert schedulers.resolve(("dpm++sde", {"noise_sampler_seed": 3}), cfg, seed=7).config.noise_sampler_seed == 3
    assert "noise_sampler_seed" not in schedulers.resolve("heun", cfg, seed=7).config
    with pytest.raises(TypeError, match="config must be a mapping such as pipe.scheduler.config"):
        schedulers.resolve("heun", "scheduler_config.json")


# --- schedules -----------------------------------------------------------------------------------------------


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
    with pytest.raises(ValueError, match="steps must be a positive int"):
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


# --- on the embedded model -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_runs_on_embedded_model_as_scheduled(name, embedded_pipe):
    """Each scheduler built from SD 1.5's config makes an image; the UNet sees exactly `schedule()`."""
    pipe = embedded_pipe
    pipe.scheduler = schedulers.make(name)
    seen_t, seen_c = [], []
    hook = pipe.unet.register_forward_pre_hook(
        lambda m, args, kwargs: seen_t.append(float((args[1] if len(args) > 1 else kwargs["timestep"]).flatten()[0])),
        with_kwargs=True,
    )
    original = pipe.scheduler.scale_model_input

    def scale(sample, *args, **kwargs):
        out = original(sample, *args, **kwargs)
        seen_c.append(float((out.double() / sample.double()).median()))
        return out

    pipe.scheduler.scale_model_input = scale
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the 8x8-latent model gains nothing from threads, and a busy CPU makes them stall
    try:
        image = pipe("a digit 3", num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    finally:
        torch.set_num_threads(threads)
        hook.remove()
        del pipe.scheduler.scale_model_input
    assert image.shape == (64, 64, 3) and np.isfinite(image).all() and image.std() > 0.01

    s = schedulers.schedule(name, 3)
    assert seen_t == s.timesteps.tolist()
    if float(pipe.scheduler.init_noise_sigma) != 1.0:  # sigma from the input scaling 1 / sqrt(sigma^2 + 1)
        measured = [math.sqrt(1 / c**2 - 1) for c in seen_c]
    else:  # the sample goes in unscaled: the scheduler's own sigma, else SD's sigma at t
        own = getattr(pipe.scheduler, "sigmas", None)
        measured = own[: len(seen_t)].tolist() if own is not None and len(own) == len(seen_t) + 1 else [sd_sigma(t) for t in seen_t]
        assert seen_c == [1.0] * len(seen_t)
    np.testing.assert_allclose(measured, s.sigmas.numpy(), rtol=1e-4)


# --- the command ---------------------------------------------------------------------------------------------


def test_cli_lists_and_describes(capsys):
    assert main(["schedulers"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out
    assert "dpm++2m_karras" in out and "stochastic" in out
    assert main(["schedulers", "dpm++2m_karras", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "alias settings: algorithm_type='dpmsolver++', solver_order=2, use_karras_sigmas=True" in out
    assert re.search(r"use_karras_sigmas\s+bool\s+False\s+False, True\s+space the sigmas", out)
    assert "14.6146" in out
    assert main(["schedulers", "eulr"]) == 2
    assert "did you mean 'euler'" in capsys.readouterr().err
    assert main(["schedulers", "--steps", "5"]) == 2
    assert "--steps needs a scheduler NAME" in capsys.readouterr().err


def test_dpm_sde_run_repeats_only_with_a_noise_seed(embedded_pipe):
    pipe = embedded_pipe
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images = []
        for seed in (None, None, 5, 5):
            pipe.scheduler = schedulers.resolve("dpm++sde", pipe.scheduler.config, seed=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torchsde's interval warnings
                out = pipe("a digit 3", num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np")
            images.append(out.images[0])
    finally:
        torch.set_num_threads(threads)
    assert np.abs(images[0] - images[1]).max() > 1e-3  # the pipeline's generator alone does not fix its noise
    np.testing.assert_array_equal(images[2], images[3])
