import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

import sdviz
from sdviz.attention import AttentionCapture, MapRecorder, attention_probs
from sdviz.trace import Trace

PROMPT = "a red letter A on a blue background"


def _images_equal(a, b, tol=1e-5):
    diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max() / 255
    assert diff <= tol


def test_processor_changes_nothing(embedded_pipe):
    plain = sdviz.generate(embedded_pipe, PROMPT, steps=6, seed=0)
    with_maps = sdviz.generate(embedded_pipe, PROMPT, steps=6, seed=0, attention=True)
    _images_equal(with_maps.image, plain.image)
    for a, b in zip(plain.steps, with_maps.steps, strict=True):
        torch.testing.assert_close(a.latents, b.latents, rtol=0, atol=1e-5)
    procs = embedded_pipe.unet.attn_processors
    assert all(type(p) is AttnProcessor2_0 for p in procs.values())


def _hand_layer():
    torch.manual_seed(0)
    attn = Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4)
    attn.set_processor(AttnProcessor2_0())
    x = torch.randn(1, 4 * 3, 8)  # a 4x3 grid
    ctx = torch.randn(1, 77, 6)
    return attn, x, ctx


def test_probs_equal_hand_softmax():
    attn, x, ctx = _hand_layer()
    q = x @ attn.to_q.weight.T  # (1, 12, 8), no bias in SD's to_q
    k = ctx @ attn.to_k.weight.T  # (1, 77, 8)
    by_hand = []
    for h in range(2):
        qh, kh = q[..., h * 4 : (h + 1) * 4], k[..., h * 4 : (h + 1) * 4]
        by_hand.append(torch.softmax(qh @ kh.transpose(1, 2) / 2.0, dim=-1))  # sqrt(4) = 2
    expected = torch.stack(by_hand).mean(0)
    got = attention_probs(attn, x, ctx, "mean")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.sum(-1), torch.ones(1, 12))  # a distribution over the 77 positions
    torch.testing.assert_close(attention_probs(attn, x, ctx, 1), by_hand[1], rtol=1e-5, atol=1e-6)


class _FakeUNet:
    class config:  # noqa: N801
        block_out_channels = (8,)


def test_recorder_output_and_map():
    attn, x, ctx = _hand_layer()
    cap = AttentionCapture(_FakeUNet(), True, guidance=lambda: False, num_evals=lambda t: 1)
    cap.latent_hw, cap.recording, cap.bins, cap._bin = (4, 3), True, [(0, 1)], 0
    recorder = MapRecorder(attn.processor, cap, factor=1)
    torch.testing.assert_close(recorder(attn, x, ctx), attn.processor(attn, x, ctx), rtol=0, atol=0)
    maps = cap.result([["t"] * 77], (32, 24))
    expected = attention_probs(attn, x, ctx, "mean")[0].T.reshape(77, 4, 3)
    torch.testing.assert_close(maps.token_maps(), expected)
    torch.testing.assert_close(maps.token_maps().sum(0), torch.ones(4, 3))


def test_word_maps(embedded_pipe):
    trace = sdviz.generate(embedded_pipe, "a purple letter Q on a zebrafish background", steps=4, seed=0, attention=True)
    m = trace.attention
    words = [w for w, _ in m.words()]
    assert "zebrafish" in words
    tabby = m.positions("zebrafish")
    assert len(tabby) == 2  # "zebra" + "fish": a word split into two BPE tokens sums both
    maps = m.token_maps()
    torch.testing.assert_close(m.word_map("zebrafish"), maps[tabby].sum(0))
    torch.testing.assert_close(m.word_map("Purple"), maps[2])
    torch.testing.assert_close(m.word_map(2), maps[2])
    torch.testing.assert_close(maps.sum(0), torch.ones(8, 8), rtol=1e-5, atol=1e-5)
    assert m.word_map("q", size="image").shape == (64, 64)
    assert m.token_maps(size=(16, 20)).shape == (77, 16, 20)
    with pytest.raises(ValueError, match=r"'cat' is not a word of the prompt; its words are \['a', 'purple'"):
        m.word_map("cat")
    with pytest.raises(ValueError, match="out of range"):
        m.word_map(80)


def test_step_bins_layers_uncond(embedded_pipe):
    opts = {"step_bins": 2, "per_layer": True, "uncond": True}
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=4, seed=0, attention=opts)
    m = trace.attention
    assert m.bins == [(0, 2), (2, 5)]  # PNDM: 5 evaluations for 4 steps
    assert m.groups == ["1", "2", "4"]
    early = m.word_map("red", steps=(0, 2))
    assert not torch.allclose(early, m.word_map("red", steps=(2, 5)))
    assert m.word_map("red", layers=[4]).shape == (8, 8)
    assert not torch.allclose(m.word_map("red", uncond=True), m.word_map("red"))
    with pytest.raises(ValueError, match="no captured step range lies inside"):
        m.word_map("red", steps=(1, 2))
    with pytest.raises(ValueError, match=r"layer group\(s\) \['8'\] were not captured"):
        m.word_map("red", layers=[8])


def test_steps_and_layer_filters(embedded_pipe):
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=4, seed=0, attention={"steps": (1, 3), "layers": ["up"]})
    m = trace.attention
    assert m.bins == [(1, 3)]
    n_up = sum(1 for n in embedded_pipe.unet.attn_processors if n.startswith("up") and "attn2" in n)
    assert m.counts.item() == 2 * n_up
    with pytest.raises(ValueError, match="unconditional maps were not captured"):
        m.word_map("red", uncond=True)


def test_bad_options(embedded_pipe):
    with pytest.raises(ValueError, match=r"unknown attention option\(s\) \['step'\]"):
        sdviz.generate(embedded_pipe, PROMPT, steps=2, attention={"step": (0, 1)})
    with pytest.raises(ValueError, match="heads must be"):
        sdviz.generate(embedded_pipe, PROMPT, steps=2, attention={"heads": "median"})
    assert all(type(p) is AttnProcessor2_0 for p in embedded_pipe.unet.attn_processors.values())


def test_non_square_batch_guidance_off(embedded_pipe):
    trace = sdviz.generate(embedded_pipe, [PROMPT, "a white digit 5 on a black background"], steps=3, seed=0,
                           height=48, width=80, guidance_scale=1.0, attention=True)
    m = trace.attention
    assert m.sums.shape == (1, 1, 2, 77, 6, 10)
    assert m.word_map("digit", index=1).shape == (6, 10)
    with pytest.raises(ValueError, match="not a word"):
        m.word_map("digit", index=0)
    assert m.word_map("background", index=1, size="image").shape == (48, 80)


def test_img2img_attention(embedded_pipe):
    init = sdviz.generate(embedded_pipe, PROMPT, steps=3, seed=0).image
    trace = sdviz.generate(embedded_pipe, PROMPT, image=init, strength=0.5, steps=8, seed=0, attention={"step_bins": 2})
    m = trace.attention
    assert m.bins[-1][1] == len(trace.steps) and (m.counts > 0).all()


def test_error_restores_processors(embedded_pipe):
    def boom(pipe, i, t, kw):
        raise RuntimeError("stop")

    before = dict(embedded_pipe.unet.attn_processors)
    with pytest.raises(RuntimeError):
        with sdviz.capture(embedded_pipe, attention=True):
            embedded_pipe(PROMPT, num_inference_steps=3, callback_on_step_end=boom)
    assert embedded_pipe.unet.attn_processors == before


def test_attention_saved_and_loaded(embedded_pipe, tmp_path):
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=3, seed=0, attention={"per_layer": True, "uncond": True})
    loaded = Trace.load(trace.save(tmp_path / "t.sdviz"))
    assert loaded == trace
    torch.testing.assert_close(loaded.attention.word_map("blue"), trace.attention.word_map("blue"))
    assert loaded.attention.groups == trace.attention.groups and loaded.attention.bins == trace.attention.bins
