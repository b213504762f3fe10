"""Attention beyond one summed word: occurrences, phrases, per-layer and per-head maps, DAAM's layers,
thresholded masks and overlap scores; traces saved before these load."""

import numpy as np
import pytest
import torch
from families import build_sd2
from PIL import Image
from test_trace import _rewrite_meta as rewrite_meta  # one way to edit a trace file's metadata, shared

import sdviz
from sdviz.overlap import as_mask, overlap_scores, threshold_map
from sdviz.trace import Trace

PROMPT = "a red letter A on a blue background"  # "a" three times: the article, the letter, the article


@pytest.fixture(scope="module")
def maps(embedded_pipe_session):
    return sdviz.generate(embedded_pipe_session, PROMPT, steps=3, seed=0, attention=True).attention


def test_a_repeated_word_is_never_summed_silently(maps):
    t = maps.token_maps()
    assert maps.count("a") == 3 and maps.count("A") == 3 and maps.count("letter a") == 1
    with pytest.raises(ValueError, match=r"'A' occurs 3 times in the prompt \(token positions \[\[1\], \[4\], \[6\]\]\): "
                                         r"pass occurrence=1..3 for one of them, or occurrence='all' for their sum"):  # fmt: skip
        maps.word_map("A")
    torch.testing.assert_close(maps.word_map("a", occurrence=2), t[4])
    torch.testing.assert_close(maps.word_map("a", occurrence="all"), t[[1, 4, 6]].sum(0))
    torch.testing.assert_close(maps.word_map("red"), t[2])  # a word that occurs once needs no occurrence
    with pytest.raises(ValueError, match=r"occurrence=1..3.*got occurrence=4"):
        maps.word_map("a", occurrence=4)
    with pytest.raises(ValueError, match="occurrence applies to words"):
        maps.word_map(4, occurrence=1)
    assert "words: a x3, red, letter, on, blue, background" in repr(maps)


def test_long_lists_in_messages_are_cut(embedded_pipe_session):
    maps = sdviz.generate(embedded_pipe_session, " ".join(["red"] * 90), steps=1, seed=0, attention=True).attention
    with pytest.raises(ValueError, match=r"occurs 75 times in the prompt \(token positions \[\[1\], .*\[8\], \.\.\. \(75 in all\)\]\)"):
        maps.word_map("red")
    with pytest.raises(ValueError, match=r"its words are \['red', .* \.\.\. \(75 in all\)\]"):
        maps.word_map("blue")


def test_phrases(maps):
    t = maps.token_maps()
    torch.testing.assert_close(maps.word_map("letter A"), t[3] + t[4])
    torch.testing.assert_close(maps.word_map("  Blue   background "), t[7] + t[8])
    torch.testing.assert_close(maps.word_map("a blue", occurrence=1), t[6] + t[7])
    assert maps.positions("on a") == [5, 6]
    with pytest.raises(ValueError, match="'red blue' is not a word of the prompt"):
        maps.word_map("red blue")
    h, w = maps.latent_size
    torch.testing.assert_close(t.sum(0), torch.ones(h, w), rtol=1e-5, atol=1e-5)


def test_per_layer_maps_kept_by_name(embedded_pipe):
    layered = sdviz.generate(embedded_pipe, PROMPT, steps=2, seed=0, attention={"per_layer": "layer"}).attention
    cross = [n.removesuffix(".processor") for n in embedded_pipe.unet.attn_processors if "attn2" in n]
    assert sorted(layered.groups) == sorted(cross)
    up_only = sdviz.generate(embedded_pipe, PROMPT, steps=2, seed=0, attention={"layers": ["up_blocks"]}).attention
    torch.testing.assert_close(layered.word_map("red", layers=["up_blocks"]), up_only.word_map("red"))
    one = next(g for g in layered.groups if g.startswith("up_blocks.1"))
    assert layered.word_map("red", layers=[one]).shape == (8, 8)
    factor = layered.factors[layered.groups.index(one)]
    by_factor = [g for g, f in zip(layered.groups, layered.factors, strict=True) if f == factor]
    torch.testing.assert_close(layered.word_map("red", layers=[factor]), layered.word_map("red", layers=by_factor))
    with pytest.raises(ValueError, match=r"layer group\(s\) \['mid_blocks'\] were not captured"):
        layered.word_map("red", layers=["mid_blocks"])


def test_per_head_maps(embedded_pipe):
    opts = {"per_layer": "layer", "heads": "all"}
    m = sdviz.generate(embedded_pipe, PROMPT, steps=2, seed=0, attention=opts).attention
    mean = sdviz.generate(embedded_pipe, PROMPT, steps=2, seed=0, attention={"per_layer": "layer"}).attention
    torch.testing.assert_close(m.token_maps(), mean.token_maps())  # the mean over heads is kept as always
    heads = embedded_pipe.unet.config.attention_head_dim
    n_heads = heads if isinstance(heads, int) else heads[0]
    per_head = torch.stack([m.token_maps(head=h) for h in range(m.head_sums[0].shape[2])])
    torch.testing.assert_close(per_head.mean(0), m.token_maps(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(per_head.sum(1), torch.ones_like(per_head.sum(1)), rtol=1e-5, atol=1e-5)
    one = sdviz.generate(embedded_pipe, PROMPT, steps=2, seed=0, attention={"per_layer": "layer", "heads": 1}).attention
    torch.testing.assert_close(m.word_map("red", head=1), one.word_map("red"), rtol=1e-5, atol=1e-6)
    assert m.head_sums[0].shape[2] == n_heads
    with pytest.raises(ValueError, match="head 99 is out of range"):
        m.word_map("red", head=99)
    with pytest.raises(ValueError, match="per-head maps were not captured"):
        mean.word_map("red", head=0)


def test_heads_all_refuses_groups_of_unequal_heads_before_running():
    pipe = build_sd2()  # 2 heads in the outer blocks, 4 in the mid block
    with pytest.raises(ValueError, match=r"heads='all' keeps each head apart, but group 'all' holds layers with \[2, 4\]"):
        sdviz.generate(pipe, PROMPT, steps=2, attention={"heads": "all"})
    with pytest.raises(ValueError, match="head 3 is out of range: the fewest heads of a recorded layer is 2"):
        sdviz.generate(pipe, PROMPT, steps=2, attention={"heads": 3})
    m = sdviz.generate(pipe, PROMPT, steps=2, attention={"heads": "all", "per_layer": "resolution"}).attention
    assert [t.shape[2] for t in m.head_sums] == [2, 4]  # factor 1: the outer blocks; factor 2: the mid block


def test_daam_preset_skips_the_mid_block(embedded_pipe):
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=2, seed=0, attention={"layers": "daam"})
    m = trace.attention
    cross = [n for n in embedded_pipe.unet.attn_processors if "attn2" in n]
    outer = [n for n in cross if not n.startswith("mid_block")]
    assert len(outer) < len(cross) and m.counts.item() == trace.unet_evals * len(outer)
    assert m.options.layers == ["down_blocks", "up_blocks"]
    with pytest.raises(ValueError, match="layers must be a list of name prefixes and factors, or 'daam'"):
        sdviz.generate(embedded_pipe, PROMPT, steps=2, attention={"layers": "up"})


def test_thresholded_masks_and_overlap(maps):
    heat = maps.word_map("red", size="image")
    mask = maps.word_mask("red", size="image")
    scaled = (heat - heat.min()) / (heat.max() - heat.min())
    assert torch.equal(mask, scaled > 0.4)  # DAAM's threshold on the map scaled to [0, 1]
    assert 0 < int(mask.sum()) < mask.numel()
    assert maps.overlap("red", mask) == {"iou": 1.0, "ioa": 1.0, "coverage": 1.0}
    assert maps.overlap("red", ~mask)["iou"] == 0.0
    left = torch.zeros(64, 64)
    left[:, :32] = 1
    scores = maps.overlap("red", Image.fromarray((left.numpy() * 255).astype(np.uint8)), threshold=0.5)
    predicted = maps.word_mask("red", 0.5, size=(64, 64))
    inter = float((predicted & (left > 0.5)).sum())
    assert scores["ioa"] == pytest.approx(inter / float(predicted.sum()))
    assert scores["coverage"] == pytest.approx(inter / 2048)
    assert maps.overlap("a", left, occurrence=2)["iou"] >= 0.0


def test_overlap_functions():
    a = torch.tensor([[True, True], [False, False]])
    b = torch.tensor([[True, False], [True, False]])
    assert overlap_scores(a, b) == {"iou": pytest.approx(1 / 3), "ioa": 0.5, "coverage": 0.5}
    assert overlap_scores(a & False, b) == {"iou": 0.0, "ioa": 0.0, "coverage": 0.0}
    assert torch.equal(threshold_map(torch.tensor([[0.0, 1.0], [0.5, 0.3]]), 0.4), torch.tensor([[False, True], [True, False]]))
    assert torch.equal(as_mask(np.array([[0.0, 1.0], [0.2, 0.9]])), torch.tensor([[False, True], [False, True]]))
    with pytest.raises(ValueError, match="threshold must be in"):
        threshold_map(torch.zeros(2, 2), 1.0)
    with pytest.raises(ValueError, match="masks differ in size"):
        overlap_scores(a, torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be 2-D"):
        as_mask(torch.zeros(2, 2, 2))


def test_traces_saved_before_families_and_layer_names_load(embedded_pipe, tmp_path):
    init = Image.new("RGB", (64, 64), (90, 90, 200))
    trace = sdviz.generate(embedded_pipe, PROMPT, steps=4, seed=0, image=init, strength=0.5,
                           attention={"per_layer": True, "uncond": True})  # fmt: skip

    def as_before(meta):
        for key in ("pipeline", "tokens_2", "added_cond", "denoising_end"):
            meta.pop(key)
        meta["img2img"].pop("denoising_start")
        meta["attention"].pop("factors")
        meta["attention"].pop("head_groups")
        meta["attention"]["options"]["per_layer"] = True

    path = trace.save(tmp_path / "old.sdviz")
    rewrite_meta(path, as_before)
    old = Trace.load(path)
    assert old.pipeline == "" and old.tokens_2 is None and old.added_cond is None and old.mask is None
    assert old.img2img.strength == 0.5 and old.img2img.denoising_start is None
    assert old.attention.groups == ["1", "2", "4"] and old.attention.factors == [1, 2, 4]
    torch.testing.assert_close(old.attention.word_map("red", layers=[2]), trace.attention.word_map("red", layers=[2]))
    torch.testing.assert_close(old.attention.word_map("letter a", uncond=True),
                               trace.attention.word_map("letter a", uncond=True))  # fmt: skip
