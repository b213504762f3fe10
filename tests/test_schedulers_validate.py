"""validate, make and resolve: bad names and settings are refused before anything is built."""

import re

import diffusers
import pytest
from diffusers import EulerDiscreteScheduler

from sdviz import schedulers
from sdviz.schedules import SD15_SCHEDULER_CONFIG as SCHEDULER_CONFIG

NAMES = schedulers.names()


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


def test_use_scheduler_puts_the_pipelines_own_back(embedded_pipe):
    own = embedded_pipe.scheduler
    with schedulers.use_scheduler(embedded_pipe, ("heun", {"use_karras_sigmas": True})) as s:
        assert embedded_pipe.scheduler is s and s.config.use_karras_sigmas
    assert embedded_pipe.scheduler is own
    with pytest.raises(RuntimeError), schedulers.use_scheduler(embedded_pipe, "ddim"):
        raise RuntimeError
    assert embedded_pipe.scheduler is own
    with schedulers.use_scheduler(embedded_pipe, None) as s:
        assert s is own
    assert schedulers.spec_key(("heun", {"use_karras_sigmas": True})) == "heun(use_karras_sigmas=True)"
    assert schedulers.spec_key(own) == "PNDMScheduler" and schedulers.spec_key({"name": "ddim"}) == "ddim"
