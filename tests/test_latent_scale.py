"""Latents on one scale: each step records its noise level and scale; schedule() follows a pipeline's config."""

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import sdviz
from sdviz import plot, schedulers
from sdviz.latent_rgb import LatentRGB
from sdviz.trace import Step, Trace

PROMPT = "a red letter A on a blue background"


@pytest.fixture(scope="module")
def runs(embedded_pipe_session):
    pipe = embedded_pipe_session
    keep = ["latents", "x0"]
    return {name: sdviz.generate(pipe, PROMPT, steps=6, scheduler=name, seed=0, keep=keep)
            for name in ("euler", "ddim", "dpm++2m")}  # fmt: skip


def test_each_step_records_the_scale_of_its_latents(runs):
    euler, ddim, dpm = runs["euler"], runs["ddim"], runs["dpm++2m"]
    assert all(s.latent_scale == 1.0 for s in euler.steps)  # the Euler family keeps x0 + sigma * eps
    for trace in (ddim, dpm):  # DDIM and DPM-Solver keep them variance preserving
        for s, nxt in zip(trace.steps, trace.steps[1:], strict=False):
            assert s.latent_sigma == nxt.sigma  # the level the next evaluation saw
            assert s.latent_scale == pytest.approx(1 / math.sqrt(1 + s.latent_sigma**2))
    assert euler.steps[-1].latent_sigma == 0.0 and dpm.steps[-1].latent_sigma == 0.0
    assert ddim.steps[-1].latent_sigma == pytest.approx(0.0292, abs=1e-4)  # DDIM stops at alpha_bar(0)


def test_euler_and_ddim_agree_on_one_scale(runs):
    # on the same timesteps DDIM is Euler's method in disguise: the same x_t, on another scale
    euler, ddim = runs["euler"], runs["ddim"]
    assert euler.timesteps.equal(ddim.timesteps)
    for a, b in list(zip(euler.steps, ddim.steps, strict=True))[:-1]:
        raw = (a.latents / b.latents).flatten().median().item()
        assert raw == pytest.approx(math.sqrt(1 + a.latent_sigma**2), rel=1e-3)  # what misled the eye
        torch.testing.assert_close(a.latents_on("sigma"), b.latents_on("sigma"), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(a.latents_on("vp"), b.latents_on("vp"), rtol=1e-4, atol=1e-4)


def test_latents_on_refuses_what_it_cannot_know():
    s = Step(index=3, timestep=500.0, sigma=1.0, latents=torch.ones(1, 4, 2, 2))
    with pytest.raises(ValueError, match="older sdviz"):
        s.latents_on()
    s.latent_sigma, s.latent_scale = 2.0, 1 / math.sqrt(5)
    assert s.latents_on("sigma").flatten()[0].item() == pytest.approx(math.sqrt(5))
    assert s.latents_on("vp").flatten()[0].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="'sigma' or 'vp'"):
        s.latents_on("ve")


def test_scales_survive_save_and_load(runs, tmp_path):
    dpm = runs["dpm++2m"]
    again = Trace.load(dpm.save(tmp_path / "dpm.sdviz"))
    assert [s.latent_scale for s in again.steps] == [s.latent_scale for s in dpm.steps]
    assert [s.latent_sigma for s in again.steps] == [s.latent_sigma for s in dpm.steps]


def test_latent_norms_plot_puts_runs_on_one_scale(runs):
    ax = Figure().add_subplot()
    lines = plot.plot_latent_norms(runs, ax=ax)
    assert [ln.get_label() for ln in lines] == ["euler", "ddim", "dpm++2m"]
    euler, ddim = (ln.get_ydata() for ln in lines[:2])
    assert euler[:-1] == pytest.approx(ddim[:-1], rel=1e-4)
    ax = Figure().add_subplot()
    (vp,) = plot.plot_latent_norms([runs["dpm++2m"]], ax=ax, scale="vp", x="sigma")
    assert list(vp.get_xdata()) == [s.latent_sigma for s in runs["dpm++2m"].steps]
    with pytest.raises(ValueError, match="'fraction', 'step' or 'sigma'"):
        plot.plot_latent_norms(runs, x="time")
    (one,) = plot.plot_latent_norms(runs["dpm++2m"], ax=Figure().add_subplot(), scale="vp", x="sigma")
    assert list(one.get_ydata()) == list(vp.get_ydata())  # one trace draws as a list of one
    with pytest.raises(TypeError, match=r"expected a Trace, a list or a \{label: \.\.\.\} dict of them, got str at 'euler'$"):
        plot.plot_latent_norms({"euler": "run.sdviz"})
    with pytest.raises(TypeError, match="expected a Trace, a list or .* got list_iterator$"):
        plot.plot_latent_norms(iter([runs["euler"]]))


def test_step_strip_shows_x_t_on_one_scale(runs):
    rgb = LatentRGB(weights=[[0.1, 0, 0, 0, 0.5], [0, 0.1, 0, 0, 0.5], [0, 0, 0.1, 0, 0.5]])  # no normalising
    euler, ddim = runs["euler"], runs["ddim"]
    for scale, same in (("vp", True), ("sigma", True), (None, False)):
        a, b = (plot.plot_step_strip(t, steps=[1], preview=rgb, scale=scale, fig=Figure())[0, 0] for t in (euler, ddim))
        diff = np.abs(a.get_array().astype(int) - b.get_array().astype(int)).max()
        assert (diff <= 1) == same, (scale, diff)


def test_schedule_follows_the_pipeline_config(embedded_pipe):
    assert embedded_pipe.scheduler.config.timestep_spacing == "leading"
    own = schedulers.schedule("euler", 50, embedded_pipe)
    assert float(own.sigmas[0]) == pytest.approx(13.12, abs=5e-3)
    assert "timestep_spacing='leading'" in repr(own)
    sd15 = schedulers.schedule("euler", 50)
    assert float(sd15.sigmas[0]) == pytest.approx(14.6146, abs=1e-3)
    assert "timestep_spacing='linspace'" in repr(sd15)
    assert schedulers.schedule("euler", 50, embedded_pipe.scheduler).sigmas.equal(own.sigmas)
    karras = schedulers.schedule("dpm++2m_karras", 10, embedded_pipe)
    assert "Karras sigmas" in repr(karras) and len(repr(karras)) < 250


def test_sdviz_own_samplers_are_captured_too(embedded_pipe):
    mine = sdviz.swap(embedded_pipe, scheduler="ddim")  # sdviz's DDIM from the paper, not a diffusers class
    trace = sdviz.generate(mine, PROMPT, steps=4, seed=0, keep=["latents"])
    assert [s.latent_sigma for s in trace.steps[:-1]] == [s.sigma for s in trace.steps[1:]]
    assert trace.steps[-1].latent_sigma == 0.0 and trace.steps[0].latent_scale < 1.0  # variance preserving
