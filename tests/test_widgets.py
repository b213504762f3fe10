import numpy as np
import pytest

import sdviz
from sdviz import widgets
from sdviz.plot.latents import latent_image


@pytest.fixture(scope="module")
def trace(embedded_pipe_session):
    return sdviz.generate(embedded_pipe_session, "a red letter A on a blue background", steps=6, seed=0,
                          scheduler="euler", attention={"step_bins": 3})


def test_step_scrubber_follows_the_slider(trace):
    v = widgets.StepScrubber(trace)
    first_png = v.view.value
    v.slider.value = 4
    assert v.shown == 4
    np.testing.assert_array_equal(v.images["latents"].get_array(), latent_image(trace.steps[4].latents[0]))
    np.testing.assert_array_equal(v.images["x0"].get_array(), latent_image(trace.steps[4].x0[0]))
    np.testing.assert_allclose(v.channels[2].get_array(), trace.steps[4].latents[0, 2].numpy())
    assert "t = " in v.label.value and f"{trace.steps[4].timestep:.0f}" in v.label.value
    assert v.view.value != first_png  # the picture was redrawn


def test_step_scrubber_needs_latents(embedded_pipe):
    t = sdviz.generate(embedded_pipe, "x", steps=2, keep=["noise_pred"])
    with pytest.raises(ValueError, match="keep=\\['latents', 'x0'\\]"):
        widgets.StepScrubber(t)


def test_scheduler_explorer_redraws_and_shows_errors_inline():
    e = widgets.SchedulerExplorer(names=["euler", "ddim", "heun"])
    e.picker.value = ("euler", "heun")
    e.steps.value = 10
    assert [ln.get_label() for ln in e.lines] == ["euler", "heun"]
    assert len(e.lines[1].get_ydata()) == 19
    e.settings.value = "use_karras_sigmas=True"
    np.testing.assert_allclose(e.lines[0].get_ydata(), e.runs["euler"].sigmas.numpy())
    assert e.error.value == ""
    e.settings.value = "use_karas_sigmas=True"
    assert "use_karras_sigmas" in e.error.value  # the closest match, shown in the widget
    e.settings.value = "use_karras_sigmas='yes'"
    assert e.error.value != ""
    e.settings.value = "this is not python"
    assert "name=value" in e.error.value


def test_attention_explorer(trace):
    a = widgets.AttentionExplorer(trace)
    a.word.value = "blue"
    np.testing.assert_allclose(a.heat.get_array(), trace.attention.word_map("blue", size="image").numpy(), rtol=1e-6)
    rng = trace.attention.bins[1]
    a.steps.value = rng
    np.testing.assert_allclose(a.heat.get_array(),
                               trace.attention.word_map("blue", steps=rng, size="image").numpy(), rtol=1e-6)
    assert a.error.value == ""


def test_parse_settings():
    assert widgets.parse_settings("a=1, b='x', c=True") == {"a": 1, "b": "x", "c": True}
    assert widgets.parse_settings("  ") == {}
    with pytest.raises(ValueError, match="Python literals"):
        widgets.parse_settings("a=foo")
