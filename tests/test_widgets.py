import base64

import numpy as np
import pytest

import sdviz
from sdviz import preview, widgets
from sdviz.plot.latents import latent_image
from sdviz.report import render_report
from sdviz.widgets.viewer import DPI, png_size

PROMPT = "a red letter A on a blue background"


@pytest.fixture(scope="module")
def trace(embedded_pipe_session):
    return sdviz.generate(embedded_pipe_session, PROMPT, steps=6, seed=0, scheduler="euler",
                          attention={"step_bins": 3})  # fmt: skip


def test_step_scrubber_follows_the_slider_and_decodes_x0(trace, embedded_pipe_session):
    v = widgets.StepScrubber(trace, vae=embedded_pipe_session.vae)
    first_png = v.view.value
    v.slider.value = 4
    s = trace.steps[4]
    assert v.shown == 4
    np.testing.assert_array_equal(v.images["latents"].get_array(), latent_image(s.latents_on("vp")[0]))
    np.testing.assert_array_equal(v.images["x0"].get_array(), latent_image(s.x0[0]))
    (decoded,) = preview.decode(embedded_pipe_session.vae, s.x0)
    assert v.images["decoded"].get_array().shape == (64, 64, 3)  # the picture itself, not the 8x8 latents
    np.testing.assert_array_equal(v.images["decoded"].get_array(), np.asarray(decoded))
    np.testing.assert_allclose(v.channels[2].get_array(), s.latents_on("vp")[0, 2].numpy(), rtol=1e-6)
    assert "t = " in v.label.value and f"{s.timestep:.0f}" in v.label.value
    assert v.view.value != first_png  # the picture was redrawn


def test_step_scrubber_without_a_vae_says_how(trace):
    v = widgets.StepScrubber(trace, scale=None)
    np.testing.assert_array_equal(v.images["latents"].get_array(), latent_image(trace.steps[0].latents[0]))
    assert any("vae=pipe.vae" in t.get_text() for t in v.images["decoded"].axes.texts)


def test_viewers_open_a_saved_trace_and_name_what_they_need(trace, embedded_pipe_session, tmp_path):
    path = trace.save(tmp_path / "run.sdviz")
    for viewer in (widgets.StepScrubber, widgets.AttentionExplorer):
        assert viewer(path).view.value == viewer(trace).view.value  # the same picture from the file
        assert viewer(str(path)).trace == trace
        with pytest.raises(TypeError, match="a viewer shows one run: pass one of them"):
            viewer([trace, trace])
        with pytest.raises(TypeError, match=r"got StableDiffusionPipeline; run the pipeline first: trace = sdviz\.generate"):
            viewer(embedded_pipe_session)
        with pytest.raises(FileNotFoundError, match="no trace file at"):
            viewer(tmp_path / "none.sdviz")


def test_step_scrubber_needs_latents(embedded_pipe):
    t = sdviz.generate(embedded_pipe, "x", steps=2, keep=["noise_pred"])
    with pytest.raises(ValueError, match="keep=\\['latents', 'x0'\\]"):
        widgets.StepScrubber(t)


def test_pictures_keep_their_natural_size(trace):
    for viewer in (widgets.StepScrubber(trace), widgets.AttentionExplorer(trace), widgets.SchedulerExplorer()):
        w, h = png_size(viewer.view.value)
        fw, fh = viewer.fig.get_size_inches()
        assert abs(w - fw * DPI) <= 1 and abs(h - fh * DPI) <= 1  # one PNG pixel a figure pixel
        assert viewer.view.layout.width == f"{w}px" and viewer.view.layout.max_width == "100%"
        bundle = viewer._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle  # live in Jupyter
        assert base64.b64decode(bundle["image/png"]) == viewer.view.value  # and a picture on a code host


def test_scheduler_explorer_toggles_add_and_remove():
    e = widgets.SchedulerExplorer()
    assert e.selected == ("dpm++2m_karras", "euler")  # two different curves, short names
    assert "DDIMParallelScheduler" not in e.buttons and "euler_a" in e.buttons
    assert e.settings.layout.width == "600px"
    e.buttons["heun"].value = True  # a plain click adds
    assert e.selected == ("dpm++2m_karras", "euler", "heun")
    assert [ln.get_label() for ln in e.lines] == ["dpm++2m_karras", "euler", "heun"]
    e.buttons["euler"].value = False  # and takes away
    assert [ln.get_label() for ln in e.lines] == ["dpm++2m_karras", "heun"]
    assert "timestep_spacing='linspace'" in e.info.value  # SD 1.5's config: which spacing each used
    with pytest.raises(ValueError, match="not offered"):
        e.selected = ("nope",)


def test_scheduler_explorer_redraws_and_shows_errors_inline(embedded_pipe):
    e = widgets.SchedulerExplorer(embedded_pipe, names=["euler", "ddim", "heun"])
    assert e.selected == ("euler",)
    e.selected = ("euler", "heun")
    e.steps.value = 10
    assert [ln.get_label() for ln in e.lines] == ["euler", "heun"]
    assert len(e.lines[1].get_ydata()) == 19
    assert "timestep_spacing='leading'" in e.info.value  # the pipeline's config
    e.settings.value = "use_karras_sigmas=True"
    np.testing.assert_allclose(e.lines[0].get_ydata(), e.runs["euler"].sigmas.numpy())
    assert e.error.value == ""
    e.settings.value = "use_karas_sigmas=True"
    assert "use_karras_sigmas" in e.error.value  # the closest match, shown in the widget
    e.settings.value = "use_karras_sigmas='yes'"
    assert e.error.value != ""
    e.settings.value = "this is not python"
    assert "name=value" in e.error.value


def test_attention_explorer_lists_each_word_once(trace):
    a = widgets.AttentionExplorer(trace)
    assert a.word.options == ("a #1", "red", "letter", "a #2", "on", "a #3", "blue", "background")
    assert a.heat.get_cmap().name == "inferno" and a.colorbar is not None
    a.word.value = "blue"
    np.testing.assert_allclose(a.heat.get_array(), trace.attention.word_map("blue", size="image").numpy(), rtol=1e-6)
    assert a.colorbar.vmax == pytest.approx(float(a.heat.get_array().max()))
    a.word.value = "a #2"
    one = trace.attention.word_map("a", occurrence=2, size="image").numpy()
    np.testing.assert_allclose(a.heat.get_array(), one, rtol=1e-6)
    rng = trace.attention.bins[1]
    a.steps.value = rng
    one = trace.attention.word_map("a", occurrence=2, steps=rng, size="image").numpy()
    np.testing.assert_allclose(a.heat.get_array(), one, rtol=1e-6)
    assert a.error.value == ""


def test_attention_explorer_offers_steps_only_when_there_is_a_choice(embedded_pipe_session):
    t = sdviz.generate(embedded_pipe_session, "a red letter A", steps=3, seed=0, attention=True)
    a = widgets.AttentionExplorer(t)
    assert a.steps is None and len(a.box.children[0].children) == 1


def test_attention_views_of_an_empty_prompt(embedded_pipe_session):
    t = sdviz.generate(embedded_pipe_session, "", steps=2, seed=0, attention=True)
    with pytest.raises(ValueError, match="no words to show.*token_maps"):
        widgets.AttentionExplorer(t)
    page = render_report(t)  # the rest of the report stays
    assert "no word map to show" in page and "Denoising, step by step" in page


def test_parse_settings():
    assert widgets.parse_settings("a=1, b='x', c=True") == {"a": 1, "b": "x", "c": True}
    assert widgets.parse_settings("  ") == {}
    with pytest.raises(ValueError, match="Python literals"):
        widgets.parse_settings("a=foo")
