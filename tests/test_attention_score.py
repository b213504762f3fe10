import json
import math
import subprocess
import sys

import pytest
import torch

from sdviz.attention_score import ROLES, auroc, score_attention
from sdviz.train.checker import glyph_mask
from sdviz.train.data import GlyphDataset, caption


def test_auroc_ranks_scores_against_their_region():
    region = torch.tensor([[1, 1, 0, 0]], dtype=torch.bool)
    assert auroc(torch.tensor([[0.9, 0.8, 0.1, 0.2]]), region) == 1.0
    assert auroc(torch.tensor([[0.1, 0.2, 0.9, 0.8]]), region) == 0.0
    assert auroc(torch.tensor([[0.5, 0.5, 0.5, 0.5]]), region) == 0.5  # ties count half
    assert auroc(torch.tensor([[0.9, 0.3, 0.5, 0.1]]), region) == 0.75  # 3 of the 4 pairs ordered right
    assert math.isnan(auroc(torch.ones(1, 4), torch.ones(1, 4, dtype=torch.bool)))


def test_glyph_mask_finds_the_rendered_glyph():
    x, _, _ = GlyphDataset(8, seed=2).batch(0, 8)
    mask = glyph_mask(x)
    ink = (x - x[:, :, :1, :1]).abs().amax(dim=1) > 0.5  # pixels far from the corner's (background) colour
    agree = (mask == ink).float().mean()
    assert mask.shape == (8, 64, 64) and agree > 0.97 and 0.03 < mask.float().mean() < 0.5


def test_roles_name_the_words_of_the_caption():
    words = caption("A", "red", "blue").split()
    assert {role: words[i] for role, i in ROLES.items()} == {
        "glyph colour": "red", "character": "A", "background colour": "blue", "background": "background",
    }  # fmt: skip


def test_score_attention_scores_each_role_on_a_tiny_model(tiny_pipe):
    score = score_attention(tiny_pipe, n_prompts=3, steps=2, batch_size=2)
    assert set(score.per_role) == set(ROLES) and score.n_prompts == 3
    assert all(0.0 <= v <= 1.0 for v in score.per_role.values())
    assert score.glyph == pytest.approx((score.per_role["glyph colour"] + score.per_role["character"]) / 2)
    assert tiny_pipe.scheduler.__class__.__name__ == "PNDMScheduler"  # put back


def test_score_attention_scores_daams_layers_by_default(tiny_pipe):
    kw = dict(n_prompts=2, steps=2, batch_size=2)
    daam, named, every = (score_attention(tiny_pipe, **kw, layers=layers)
                          for layers in ("daam", ["down_blocks", "up_blocks"], None))  # fmt: skip
    assert daam.layers == "daam" and daam.per_role == named.per_role  # the same maps: no mid block
    assert every.per_role != daam.per_role  # the mid block's maps change the mean


def test_daams_layers_take_the_up_blocks_of_a_unet_without_cross_attention_going_down(tiny_pipe):
    from diffusers import UNet2DConditionModel

    from sdviz.validation import UsageError

    config = {**tiny_pipe.unet.config, "down_block_types": ("DownBlock2D", "DownBlock2D")}
    torch.manual_seed(0)
    tiny_pipe.unet = UNet2DConditionModel.from_config(config)
    kw = dict(n_prompts=2, steps=2, batch_size=2)
    daam, up = (score_attention(tiny_pipe, **kw, layers=layers) for layers in ("daam", ["up_blocks"]))
    assert daam.per_role == up.per_role
    with pytest.raises(UsageError, match=r"\['down_blocks'\] match no cross-attention layer"):
        score_attention(tiny_pipe, **kw, layers=["down_blocks"])  # named alone, it must match


@pytest.mark.slow
def test_evaluate_command_reports_schedulers_and_attention(tmp_path, tiny_pipe):
    tiny_pipe.save_pretrained(tmp_path / "tiny")
    cmd = [sys.executable, "-m", "sdviz", "evaluate", "--model", str(tmp_path / "tiny"), "--n-prompts", "2",
           "--schedulers", "euler,ddim", "--steps", "2,3", "--attention", "--json"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    cells = [(r["scheduler"], r["steps"]) for r in result["quality"]]
    assert cells == [("euler", 2), ("euler", 3), ("ddim", 2), ("ddim", 3)]
    assert set(result["attention"]["per_role"]) == set(ROLES)
    text = subprocess.run([*cmd[:8], "--per-prompt", "2", "--steps", "2"], capture_output=True, text=True, check=True)
    head, row = text.stdout.splitlines()[1:3]
    assert "2 prompts x 2" in text.stdout and head.split()[-2:] == ["±", "s.e."], text.stdout
    assert row.split()[:2] == ["EulerDiscreteScheduler", "2"] and len(row.split()) == 7, row
    bad = subprocess.run([*cmd[:-1], "--schedulers", "eulr"], capture_output=True, text=True)
    assert bad.returncode == 2 and "euler" in bad.stderr and "Traceback" not in bad.stderr
