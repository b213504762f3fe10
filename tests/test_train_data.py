import random
import re

import numpy as np
import pytest
import torch
from PIL import Image

from sdviz.train.data import (
    CHARS,
    COLORS,
    FONT_FILES,
    MARGIN,
    PALETTE,
    GlyphDataset,
    all_prompts,
    caption,
    font_path,
    lit,
    render,
    shade_of,
    spread_of,
    to_image,
)  # fmt: skip

GRAMMAR = re.compile(r"^a (\w+) (letter|digit) ([A-Z0-9]) on a (\w+) background$")


def test_same_seed_same_items_other_seed_other_items():
    a, b, c = GlyphDataset(6, seed=3), GlyphDataset(6, seed=3), GlyphDataset(6, seed=4)
    for i in range(6):
        assert torch.equal(a[i][0], b[i][0]) and a[i][1:] == b[i][1:]
    assert any(not torch.equal(a[i][0], c[i][0]) for i in range(6))
    x, captions, labels = a.batch(2, 5)
    assert x.shape == (3, 3, 64, 64) and x.dtype == torch.float32
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert captions == [a[i][1] for i in range(2, 5)]


def test_captions_follow_the_grammar_and_match_the_labels():
    seen_chars, seen_fonts = set(), set()
    for _, text, lab in GlyphDataset(400, seed=0):
        m = GRAMMAR.match(text)
        assert m, text
        fg, kind, char, bg = m.groups()
        assert (fg, char, bg) == (lab.fg, lab.char, lab.bg) and kind == lab.kind
        assert fg != bg and fg in COLORS and bg in COLORS
        assert kind == ("digit" if char.isdigit() else "letter")
        seen_chars.add(char)
        seen_fonts.add(lab.font)
    assert len(seen_chars) > 30 and len(seen_fonts) == len(FONT_FILES)
    assert len(all_prompts()) == 36 * 8 * 7 == len(set(all_prompts()))
    assert caption("7", "red", "blue") == "a red digit 7 on a blue background"


def test_glyphs_are_inside_and_drawn_in_their_colours():
    for i in range(150):
        rng = random.Random(i)
        char, font = CHARS[i % len(CHARS)], FONT_FILES[i % len(FONT_FILES)]
        fg, bg = rng.sample(COLORS, 2)
        a = np.asarray(render(char, fg, bg, font, rng)).astype(int)
        ring = np.concatenate([a[:MARGIN].reshape(-1, 3), a[-MARGIN:].reshape(-1, 3),
                               a[:, :MARGIN].reshape(-1, 3), a[:, -MARGIN:].reshape(-1, 3)])  # fmt: skip
        assert (ring == PALETTE[bg]).all(), (char, font)
        glyph = (np.abs(a - PALETTE[fg]).sum(-1) < 10).sum()
        assert 40 < glyph < 64 * 64 / 2, (char, font, glyph)  # visible, not a blob


def test_fonts_come_from_matplotlib_and_bad_input_is_named():
    assert all(font_path(f).is_file() for f in FONT_FILES)
    rng = random.Random(0)
    with pytest.raises(ValueError, match="A-Z or 0-9"):
        render("a", "red", "blue", FONT_FILES[0], rng)
    with pytest.raises(ValueError, match="choose one of red, green"):
        caption("A", "pink", "blue")
    with pytest.raises(ValueError, match="must differ"):
        caption("A", "red", "red")
    with pytest.raises(ValueError, match="unknown font"):
        font_path("Comic.ttf")


def test_items_are_the_renders_of_their_seeded_labels():
    from sdviz.train.data import sample_labels

    x, _, lab = GlyphDataset(1, seed=9)[0]
    rng = random.Random("9:0")
    assert sample_labels(rng) == lab
    assert np.array_equal(np.asarray(to_image(x)), np.asarray(render(lab.char, lab.fg, lab.bg, lab.font, rng)))


def test_shades_stay_nearest_their_own_palette_colour():
    rng = random.Random(0)
    for name in COLORS:
        shades = np.array([shade_of(name, rng, 0.45) for _ in range(300)], dtype=float)
        palette = np.array([PALETTE[c] for c in COLORS], dtype=float)
        nearest = np.linalg.norm(shades[:, None] - palette[None], axis=-1).argmin(1)
        assert (nearest == COLORS.index(name)).all(), name
        assert shades.std(0).max() > 3  # they do vary


def test_shade_zero_renders_exactly_as_before_and_shade_varies_the_colours():
    a = render("A", "red", "blue", "DejaVuSans.ttf", random.Random(1))
    b = render("A", "red", "blue", "DejaVuSans.ttf", random.Random(1), shade=0.0)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and np.asarray(a)[0, 0].tolist() == list(PALETTE["blue"])
    x, _, _ = GlyphDataset(40, seed=3, shade=0.35).batch(0, 40)
    corners = x[:, :, 0, 0]
    assert len({tuple(c.tolist()) for c in corners}) == 40
    with pytest.raises(ValueError, match="shade"):
        GlyphDataset(4, shade=0.6)


def test_spread_shades_overlap_the_neighbouring_colours_as_their_std_says():
    rng = random.Random(0)
    palette = np.array([PALETTE[c] for c in COLORS], dtype=float)
    own = {}
    for spread in (0.25, 0.5):
        shades = np.array([spread_of(name, rng, spread) for name in COLORS for _ in range(400)], dtype=float)
        nearest = np.linalg.norm(shades[:, None] - palette[None], axis=-1).argmin(1)
        own[spread] = (nearest == np.repeat(np.arange(len(COLORS)), 400)).mean()
    assert 0.93 < own[0.25] < 1.0 and 0.65 < own[0.5] < 0.83  # 0.97 and 0.74 over 20,000 draws per colour
    assert own[0.5] < own[0.25]


def test_spread_replaces_one_role_and_leaves_the_other_as_the_ball_shade_drew_it():
    ball = GlyphDataset(12, seed=5, shade=0.35)
    wide = GlyphDataset(12, seed=5, shade=0.35, spread=(0.0, 0.5))
    moved = 0
    for i in range(12):
        (x, _, _), (y, _, _) = ball[i], wide[i]
        colours, counts = x.flatten(1).unique(dim=1, return_counts=True)
        fg = colours[:, counts.argsort()[-2]]  # the second commonest colour: the glyph's inside, not its edges
        inside = (x == fg[:, None, None]).all(0)
        assert inside.sum() > 20 and (y[:, inside] == fg[:, None]).all()  # the glyph colour is drawn first, alike
        moved += not torch.equal(x[:, 0, 0], y[:, 0, 0])
    assert moved >= 10  # the background is drawn anew (white can clip to the same value)
    assert wide.settings() == {**ball.settings(), "spread": [0.0, 0.5]}  # so a latent cache tells them apart
    for bad in ((0.5,), (0.0, 1.5), (-0.1, 0.0)):
        with pytest.raises(ValueError, match="spread"):
            GlyphDataset(4, spread=bad)


def test_light_is_a_linear_brightness_ramp_and_zero_light_changes_nothing():
    flat = Image.new("RGB", (64, 64), (100, 100, 100))
    out = np.asarray(lit(flat, random.Random(0), 0.4), dtype=float)[..., 0]
    yy, xx = np.mgrid[0:64, 0:64]
    design = np.stack([np.ones(64 * 64), xx.ravel(), yy.ravel()], 1)
    coef, *_ = np.linalg.lstsq(design, out.ravel(), rcond=None)
    assert np.abs(design @ coef - out.ravel()).max() <= 1.0  # a plane, up to rounding
    assert out.max() - out.min() > 5 and abs(out.mean() - 100) < 1
    a = render("A", "red", "blue", "DejaVuSans.ttf", random.Random(1), shade=0.3)
    b = render("A", "red", "blue", "DejaVuSans.ttf", random.Random(1), shade=0.3, light=0.0)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="light"):
        GlyphDataset(4, light=0.7)


def test_caption_noise_swaps_attributes_at_its_rate_and_keeps_the_grammar():
    from sdviz.train.diffusion import attribute_table, noisy_captions, prompt_table

    attrs, _ = attribute_table()
    table = prompt_table()
    prompt = torch.arange(len(table)).repeat(20)  # every caption, the empty one included, 20 times
    same = noisy_captions(prompt, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(same, prompt)
    noisy = noisy_captions(prompt, 0.3, torch.Generator().manual_seed(0))
    assert torch.all(noisy[prompt == 0] == 0)  # the empty prompt stays empty
    assert torch.all(noisy[prompt > 0] > 0)  # a caption stays a caption of the grammar (fg != bg)
    swapped = (attrs[noisy] != attrs[prompt])[prompt > 0].float().mean(0)  # per attribute: char, fg, bg
    # each attribute is swapped with p = 0.3, less the few swaps undone because both colours got one name
    assert torch.all((swapped > 0.25) & (swapped < 0.31)), swapped
    words = [table[i].split() for i in noisy[:50].tolist() if i]
    assert all(w[-1] == "background" and w[2] in ("letter", "digit") for w in words)


def test_caption_noise_per_attribute_swaps_only_what_it_names_and_keeps_the_scalar_stream():
    from sdviz.train.diffusion import attribute_table, noisy_captions, prompt_table

    attrs, _ = attribute_table()
    prompt = torch.arange(1, len(prompt_table())).repeat(10)
    noisy = noisy_captions(prompt, (0.0, 0.3, 0.1), torch.Generator().manual_seed(0))
    swapped = (attrs[noisy] != attrs[prompt]).float().mean(0)
    assert swapped[0] == 0 and 0.25 < swapped[1] < 0.31 and 0.07 < swapped[2] < 0.11, swapped
    # a scalar and the same value three times draw the same randomness: a recipe's run does not change
    one = noisy_captions(prompt, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(one, noisy_captions(prompt, (0.3, 0.3, 0.3), torch.Generator().manual_seed(1)))
    for bad in (1.5, (0.1, 0.2), (0.1, -0.1, 0.2)):
        with pytest.raises(ValueError, match="caption noise"):
            noisy_captions(prompt, bad, torch.Generator())
