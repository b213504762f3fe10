import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import sdviz
from sdviz import plot, preview, schedulers
from sdviz.models.timestep import timestep_embedding

PROMPT = "a red letter A on a blue background"


@pytest.fixture(scope="module")
def trace(embedded_pipe_session):
    return sdviz.generate(embedded_pipe_session, PROMPT, steps=6, seed=0, scheduler="euler",
                          attention={"step_bins": 2})


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _ax():
    return plt.figure().add_subplot()


def test_tokens_table(trace):
    ax = _ax()
    table = plot.plot_tokens(trace, ax=ax)
    assert table.axes is ax
    texts = [c.get_text().get_text() for (r, c_), c in table.get_celld().items() if c_ == 3 and r > 0]
    for tok in trace.tokens.tokens[: trace.tokens.length]:
        assert tok in texts
    uniq = plot.plot_unique_tokens(trace, ax=_ax())
    cells = [c.get_text().get_text() for c in uniq.get_celld().values()]
    assert str(2368) not in cells and "red</w>" in cells and "736" in cells


def test_tokens_table_marks_truncation(embedded_pipe):
    info = sdviz.token_info(" ".join(["red"] * 80), embedded_pipe.tokenizer)
    table = plot.plot_tokens(info, ax=_ax())
    texts = [c.get_text().get_text() for c in table.get_celld().values()]
    assert sum("red</w>" == t for t in texts) >= len(info.truncated)


def test_latent_channels(trace):
    fig = plt.figure()
    axes = fig.subplots(1, 4)
    ims = plot.plot_latent_channels(trace, step=3, axes=axes, colorbar=False)
    assert [im.axes for im in ims] == list(axes)
    for c, im in enumerate(ims):
        np.testing.assert_allclose(im.get_array(), trace.steps[3].latents[0, c].numpy())
    lo, hi = ims[0].get_clim()
    assert all(im.get_clim() == (lo, hi) for im in ims) and lo == -hi  # one shared, centred scale
    with pytest.raises(ValueError, match="out of range"):
        plot.plot_latent_channels(trace, step=99)


def test_step_strip_with_preview(trace, embedded_pipe):
    fit = preview.fit_latent_rgb(embedded_pipe.vae)
    decoded = preview.decode(embedded_pipe.vae, torch.cat([trace.steps[i].x0 for i in (0, 5)]))
    fig = plt.figure()
    grid = plot.plot_step_strip(trace, steps=[0, 5], preview=fit, decoded=decoded, fig=fig)
    assert grid.shape == (3, 2)
    np.testing.assert_array_equal(grid[0, 1].get_array(), fit.apply(trace.steps[5].latents[0]))
    np.testing.assert_array_equal(grid[1, 0].get_array(), fit.apply(trace.steps[0].x0[0]))
    np.testing.assert_array_equal(grid[2, 1].get_array(), np.asarray(decoded[1]))
    assert grid[0, 0].axes.figure is fig


def test_schedules_overlaid(trace):
    sd15 = schedulers.sd15_config()
    runs = [schedulers.schedule("euler", 10, sd15), schedulers.schedule("heun", 10, sd15), trace]
    ax = _ax()
    lines = plot.plot_sigmas(runs, ax=ax)
    assert len(lines) == 3 and ax.get_yscale() == "log"
    np.testing.assert_allclose(lines[1].get_ydata(), runs[1].sigmas.numpy())
    np.testing.assert_allclose(lines[2].get_ydata(), trace.sigmas.numpy())
    frac = plot.plot_timesteps(runs, ax=_ax(), x="fraction")
    assert frac[1].get_xdata()[-1] == 1.0 and len(frac[1].get_xdata()) == 19
    np.testing.assert_allclose(frac[0].get_ydata(), runs[0].timesteps.numpy())


def test_alpha_bar_and_snr():
    procs = [schedulers.forward_process(b) for b in ("linear", "scaled_linear", "squaredcos_cap_v2")]
    lines = plot.plot_alphas_cumprod(procs, ax=_ax())
    np.testing.assert_allclose(lines[2].get_ydata(), procs[2].alphas_cumprod.numpy())
    ax = _ax()
    snr = plot.plot_snr({"sd": procs[1]}, ax=ax)
    np.testing.assert_allclose(snr[0].get_ydata(), procs[1].snr.numpy())
    assert snr[0].get_label() == "sd" and ax.get_yscale() == "log"
    with pytest.raises(TypeError, match="expected a ForwardProcess.*got Schedule .*draw it with plot_sigmas"):
        plot.plot_snr(schedulers.schedule("euler", 10), ax=_ax())
    with pytest.raises(TypeError, match="expected a Schedule or a Trace, a list .* got int at position 1$"):
        plot.plot_sigmas([schedulers.schedule("euler", 10), 3], ax=_ax())


def test_forward_process_grid(trace):
    fp = schedulers.forward_process("scaled_linear")
    n = preview.noise_image(trace.image, [100, 900], fp, seed=0)
    grid = plot.plot_forward_process({"scaled_linear": n}, fig=plt.figure())
    assert grid.shape == (1, 3)
    np.testing.assert_allclose(grid[0, 2].get_array(),
                               np.transpose(np.clip(n.samples[1].numpy() / 2 + 0.5, 0, 1), (1, 2, 0)))
    figures = plt.get_fignums()
    with pytest.raises(TypeError, match="expected a Noised .*got Trace at 'run'"):
        plot.plot_forward_process({"run": trace})
    with pytest.raises(TypeError, match="got Trace"):
        plot.plot_forward_process(trace)
    assert plt.get_fignums() == figures  # refused before a figure is made


def test_timestep_embedding_heatmap():
    ax = _ax()
    im = plot.plot_timestep_embedding([0, 500, 999], dim=32, ax=ax)
    np.testing.assert_allclose(im.get_array(), timestep_embedding(torch.tensor([0.0, 500, 999]).double(), 32).numpy())
    assert im.axes is ax


def test_timestep_embedding_of_a_run_and_a_schedule(trace):
    im = plot.plot_timestep_embedding(trace, dim=16, ax=_ax())
    t = torch.tensor([s.timestep for s in trace.steps]).double()
    assert im.get_array().shape == (len(trace.steps), 16)
    np.testing.assert_allclose(im.get_array(), timestep_embedding(t, 16).numpy())
    sched = schedulers.schedule("heun", 4)
    im = plot.plot_timestep_embedding(sched, dim=16, ax=_ax())
    np.testing.assert_allclose(im.get_array(), timestep_embedding(torch.as_tensor(sched.timesteps), 16).numpy())
    with pytest.raises(TypeError, match="timesteps must be numbers, a Trace or a Schedule, got dict"):
        plot.plot_timestep_embedding({"t": 1})


def test_compare_grid(embedded_pipe):
    res = sdviz.compare(embedded_pipe, PROMPT, schedulers=["euler", "heun"], steps=[2, 3], seed=0)
    fig = plt.figure()
    out = plot.plot_compare_grid(res, fig=fig)
    assert set(out) == set(res)
    np.testing.assert_array_equal(out[("heun", 3)].get_array(), np.asarray(res[("heun", 3)].image))
    title = out[("heun", 3)].axes.get_title()
    assert str(res[("heun", 3)].unet_evals) in title


def test_guidance(trace):
    lines = plot.plot_guidance_norms(trace, ax=_ax())
    s = trace.steps[2]
    diff = (s.noise_pred_text - s.noise_pred_uncond)[0].numpy()
    assert lines[2].get_ydata()[2] == pytest.approx(np.sqrt((diff**2).mean()))
    ims = plot.plot_guidance_maps(trace, step=2, channel=1, fig=plt.figure())
    np.testing.assert_allclose(ims[0].get_array(), s.noise_pred_text[0, 1].numpy())
    np.testing.assert_allclose(ims[2].get_array(), diff[1], rtol=1e-6)


def test_attention(trace):
    ax = _ax()
    im = plot.plot_word_attention(trace, "red", ax=ax)
    assert im.axes is ax
    expected = trace.attention.word_map("red", size="image").numpy()
    np.testing.assert_allclose(im.get_array(), expected, rtol=1e-6)
    fig = plt.figure()
    ims = plot.plot_prompt_attention(trace, fig=fig)
    titles = [ax.get_title() for ax in fig.axes][1:]  # after the image
    assert titles == ["a #1", "red", "letter", "a #2", "on", "a #3", "blue", "background"]  # once per occurrence
    m = trace.attention
    np.testing.assert_allclose(ims[3].get_array(), m.word_map("a", occurrence=2, size="image").numpy(), rtol=1e-6)
    np.testing.assert_allclose(ims[6].get_array(), m.word_map("blue", size="image").numpy(), rtol=1e-6)
    top = max(float(m.word_map(w, occurrence=o, size="image").max()) for w, o in
              [("a", 1), ("red", None), ("letter", None), ("a", 2), ("on", None), ("a", 3), ("blue", None),
               ("background", None)])  # fmt: skip
    assert all(im.get_clim()[1] == pytest.approx(top) for im in ims)  # one shared scale


def test_attention_scale_per_word_and_chosen_words(trace):
    fig = plt.figure()
    ims = plot.plot_prompt_attention(trace, words=["letter A", ("a", 3), "blue"], scale="word", fig=fig)
    m = trace.attention
    assert [ax.get_title() for ax in fig.axes][1:] == ["letter A", "a #3", "blue"]
    np.testing.assert_allclose(ims[0].get_array(), m.word_map("letter A", size="image").numpy(), rtol=1e-6)
    for im, heat in zip(ims, (m.word_map("letter a", size="image"), m.word_map("a", occurrence=3, size="image"),
                              m.word_map("blue", size="image")), strict=True):  # fmt: skip
        assert im.get_clim() == pytest.approx((0.0, float(heat.max())), rel=1e-6)  # each word on its own scale
    with pytest.raises(ValueError, match="scale must be 'shared' or 'word'"):
        plot.plot_prompt_attention(trace, scale="global")
    with pytest.raises(ValueError, match="'a' occurs 3 times"):
        plot.plot_prompt_attention(trace, words=["a"])


def test_overlay(trace):
    heat = trace.attention.word_map("red")  # on the 8x8 latent grid: resized to the image
    im = plot.plot_overlay(heat, trace.image, ax=_ax(), alpha=0.5, cmap="viridis")
    assert im.get_array().shape == (64, 64) and im.get_cmap().name == "viridis" and im.get_alpha() == 0.5
    np.testing.assert_allclose(im.get_array(), trace.attention.word_map("red", size="image").numpy(), rtol=1e-5)
    picture = plot.overlay_image(heat, trace.image)
    assert picture.size == trace.image.size and picture.mode == "RGB"
    alone = np.asarray(plot.overlay_image(heat, vmax=float(heat.max())))
    assert alone.shape == (8, 8, 3)
    brightest = np.unravel_index(int(heat.argmax()), heat.shape)
    assert tuple(alone[brightest]) == (252, 255, 164)  # inferno's top colour at the map's maximum
    figures = plt.get_fignums()
    with pytest.raises(TypeError, match=r"heat must be .* got Trace \(a word's map of a run: trace.attention.word_map"):
        plot.plot_overlay(trace)
    with pytest.raises(TypeError, match="image must be a PIL image .* got str"):
        plot.plot_overlay(heat, "red")
    with pytest.raises(TypeError, match="image must be a PIL image"):
        plot.overlay_image(heat, trace.image.getdata())
    assert plt.get_fignums() == figures


def test_kwargs_pass_through(trace):
    ims = plot.plot_latent_channels(trace, step=0, fig=plt.figure(), cmap="viridis", colorbar=False)
    assert ims[0].get_cmap().name == "viridis"
    lines = plot.plot_sigmas(trace, ax=_ax(), color="red", linestyle="--")
    assert lines[0].get_color() == "red" and lines[0].get_linestyle() == "--"


def _trace_like():
    from sdviz.trace import Trace

    return Trace(prompt="p")


def _evaluation(scheduler, steps, guidance, acc):
    from sdviz.train.evaluation import Evaluation

    return Evaluation(acc, acc, 1.0, acc, 20, 20, scheduler, steps, guidance, 1.0)


def test_quality_one_line_per_scheduler_sorted_by_steps():
    results = [_evaluation("EulerDiscreteScheduler", s, 7.5, a) for s, a in [(25, 0.9), (5, 0.2), (10, 0.6)]]
    results += [_evaluation("DDIMScheduler", s, 7.5, a).to_dict() for s, a in [(5, 0.1), (25, 0.8)]]
    lines = plot.plot_quality(results, ax=_ax(), metric="char_accuracy", linestyle=":")
    assert [ln.get_label() for ln in lines] == ["EulerDiscrete", "DDIM"]
    np.testing.assert_array_equal(lines[0].get_xdata(), [5, 10, 25])
    np.testing.assert_array_equal(lines[0].get_ydata(), [0.2, 0.6, 0.9])
    assert lines[1].get_linestyle() == ":"


def test_quality_by_guidance_splits_other_settings():
    results = [_evaluation("EulerDiscreteScheduler", s, g, 0.5) for s in (10, 25) for g in (1.0, 7.5, 3.0)]
    lines = plot.plot_quality(results, ax=_ax(), x="guidance_scale")
    assert [ln.get_label() for ln in lines] == ["EulerDiscrete, steps 10", "EulerDiscrete, steps 25"]
    np.testing.assert_array_equal(lines[0].get_xdata(), [1.0, 3.0, 7.5])
    with pytest.raises(ValueError, match="metric must be one of"):
        plot.plot_quality(results, metric="accuracy")
    with pytest.raises(ValueError, match="x must be one of"):
        plot.plot_quality(results, x="seed")
    with pytest.raises(TypeError, match="results must be Evaluation objects.*got Trace"):
        plot.plot_quality(_trace_like())


def test_quality_reads_the_shipped_json():
    import importlib.resources
    import json

    quality = json.loads(importlib.resources.files("sdviz").joinpath("data/quality.json").read_text())
    lines = plot.plot_quality(quality, ax=_ax())
    names = {r["scheduler"] for r in quality["schedulers"]}
    assert len(lines) == len(names) and {ln.get_label() for ln in lines} == {n.removesuffix("Scheduler") for n in names}
    (euler,) = plot.plot_quality(quality, ax=_ax(), x="guidance_scale", metric="char_accuracy")
    assert list(euler.get_xdata()) == sorted(r["guidance_scale"] for r in quality["guidance"])
    alias = {**quality, "schedulers": [{**quality["schedulers"][0], "scheduler": "dpm++2m_karras"}]}
    assert [ln.get_label() for ln in plot.plot_quality(alias, ax=_ax())] == ["dpm++2m_karras"]
    with pytest.raises(ValueError, match="no table 'attention'"):
        plot.plot_quality(quality, table="attention")
