"""describe(): every constructor parameter with its type, default, allowed values and meaning."""

import inspect
import re

import diffusers

from sdviz import schedulers

NAMES = schedulers.names()


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


def test_describe_repr_shows_every_parameter():
    info = schedulers.describe("dpm++2m_karras")
    text = repr(info)
    lines = text.splitlines()
    assert lines[0] == "DPMSolverMultistepScheduler with algorithm_type='dpmsolver++', solver_order=2, use_karras_sigmas=True"
    assert len(lines) == 4 + len(info.params)  # a header, then one line a parameter
    for p in info.params:
        assert any(ln.strip().startswith(f"{p.name}: ") and f"= {p.default!r}" in ln for ln in lines), p.name
    assert "use_karras_sigmas: bool = False (here True): space the sigmas as in Karras" in text
    assert "timestep_spacing: one of ['linspace', 'leading', 'trailing'] = 'linspace'" in text
    assert repr(info.param("solver_order")).startswith("Param(solver_order: int = 2: ")


def test_short_reprs_of_the_noise_schedules():
    fp = schedulers.forward_process("scaled_linear")
    assert repr(fp) == ("ForwardProcess('scaled_linear', T=1000: beta 0.00085 -> 0.012, alpha_bar 0.9991 -> 0.00466, "
                        "SNR 1175 -> 0.004682, sigma 0.02917 -> 14.61)")  # fmt: skip
    s = schedulers.schedule("euler", 50)
    assert repr(s) == ("Schedule(EulerDiscreteScheduler, 50 steps, timestep_spacing='linspace'; sigma 14.61 -> 0.02917, "
                       "then 0; 50 UNet evaluations, order 1, deterministic)")  # fmt: skip
    assert "original_inference_steps=50" in repr(schedulers.schedule("lcm", 4))
