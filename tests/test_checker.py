import numpy as np
import pytest
import torch
from PIL import Image

import sdviz
from sdviz.train.checker import Checker, accuracy, colors, ink
from sdviz.train.data import PALETTE, GlyphDataset
from sdviz.train.evaluation import Evaluation, eval_prompts, evaluate


@pytest.fixture(scope="module")
def checker():
    return Checker()


def test_shipped_checker_reads_fresh_renders(checker):
    # a seed used neither by the checker's training (1234, 1235) nor by the model's data (0)
    assert accuracy(checker.model, GlyphDataset(1000, seed=4242)) >= 0.99


def test_colour_check_is_exact_on_renders_and_survives_blur():
    x, _, labels = GlyphDataset(300, seed=77).batch(0, 300)
    fg, bg = colors(x)
    assert fg == [lab.fg for lab in labels] and bg == [lab.bg for lab in labels]
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    fg, bg = colors(blurred)
    assert np.mean([f == lab.fg for f, lab in zip(fg, labels, strict=True)]) >= 0.97
    assert bg == [lab.bg for lab in labels]


def test_checker_judges_images_and_tensors_alike(checker):
    x, _, labels = GlyphDataset(8, seed=5).batch(0, 8)
    images = [Image.fromarray(((t.permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()) for t in x]
    a, b = checker(x), checker(images)
    assert a == b
    assert a.chars == [lab.char for lab in labels]
    assert ink(x).shape == (8, 1, 32, 32)


def test_plain_image_reads_as_one_colour(checker):
    plain = Image.new("RGB", (64, 64), PALETTE["green"])
    j = checker([plain])
    assert j.bg == ["green"] and j.fg == ["green"]


def test_missing_weights_and_bad_settings_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="sdviz train checker"):
        Checker(tmp_path / "none.safetensors")
    with pytest.raises(ValueError, match="between 1 and 2016"):
        eval_prompts(5000)
    assert eval_prompts(12) == eval_prompts(12) and len(set(eval_prompts(200))) == 200


def test_embedded_model_follows_glyph_prompts(checker):
    pipe = sdviz.load_pipeline(device="cpu")
    result = evaluate(pipe, n_prompts=25, steps=25, guidance_scale=7.5, checker=checker)
    assert result.n_images == 25
    # on the first 25 of the 200 held-out prompts (all 200, three seeds each: 95.8 %, 99.2 %, 96.3 %)
    assert result.char_accuracy >= 0.9, result
    assert result.fg_accuracy >= 0.95 and result.bg_accuracy >= 0.95, result


def test_evaluation_standard_error_is_binomial_over_the_images():
    r = Evaluation(0.96, 1.0, 0.95, 0.9, 100, 50, "EulerDiscreteScheduler", 25, 7.5, 1.0)
    assert r.stderr() == pytest.approx(0.03)  # sqrt(0.9 * 0.1 / 100)
    assert r.stderr("char_accuracy") == pytest.approx(0.0196, abs=1e-4) and r.stderr("fg_accuracy") == 0.0
    with pytest.raises(ValueError, match="all_accuracy"):
        r.stderr("accuracy")
