import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sdviz
from sdviz.cli import main
from sdviz.trace import Trace

PROMPT = "a red letter A on a blue background"


def test_grid_same_noise(embedded_pipe):
    res = sdviz.compare(embedded_pipe, PROMPT, schedulers=["euler", "ddim", ("heun", {"use_karras_sigmas": True})],
                        steps=[2, 4], seed=5)
    assert list(res) == [("euler", 2), ("euler", 4), ("ddim", 2), ("ddim", 4),
                         ("heun(use_karras_sigmas=True)", 2), ("heun(use_karras_sigmas=True)", 4)]
    assert res[("euler", 4)].scheduler == "EulerDiscreteScheduler"
    assert res[("heun(use_karras_sigmas=True)", 4)].unet_evals == 7
    assert res[("ddim", 2)].unet_evals == 2 and res[("ddim", 2)].wall_time > 0
    # the same seed gives the same initial noise, scaled by each scheduler's init_noise_sigma
    euler, ddim = res[("euler", 4)], res[("ddim", 4)]
    ratio = (euler.init_latents / ddim.init_latents).flatten()
    assert np.allclose(ratio.numpy(), ratio[0].item(), rtol=1e-4)
    assert embedded_pipe.scheduler.__class__.__name__ == "PNDMScheduler"


def test_bad_names_fail_before_running(embedded_pipe):
    with pytest.raises(ValueError, match="eulr"):
        sdviz.compare(embedded_pipe, PROMPT, schedulers=["euler", "eulr"], steps=[2])
    with pytest.raises(ValueError, match=r"steps must be an int in \[1, 1000\], got 0"):
        sdviz.compare(embedded_pipe, PROMPT, schedulers=["euler"], steps=[0])


def test_cli_writes_images_traces_index(tmp_path, capsys):
    rc = main(["compare", PROMPT, "--schedulers", "euler,ddim", "--steps", "2,3", "--out", str(tmp_path),
               "--device", "cpu"])
    assert rc == 0
    index = json.loads((tmp_path / "index.json").read_text())
    assert [(r["scheduler"], r["steps"]) for r in index["runs"]] == [("euler", 2), ("euler", 3), ("ddim", 2), ("ddim", 3)]
    for r in index["runs"]:
        assert (tmp_path / r["image"]).is_file()
        assert len(Trace.load(tmp_path / r["trace"]).timesteps) == r["unet_evals"]
    out = capsys.readouterr().out
    assert f"grid: {tmp_path / 'grid.png'}" in out and f"index: {tmp_path / 'index.html'}" in out
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("L"), dtype=float)
    assert grid.shape[0] > grid.shape[1] * 0.8 and grid.std() > 20  # two rows by two columns, drawn
    page = (tmp_path / "index.html").read_text()
    links = re.findall(r'(?:href|src)="([^"]+)"', page)
    assert "grid.png" in links and all((tmp_path / link).is_file() for link in links)
    assert {r["image"] for r in index["runs"]} | {r["trace"] for r in index["runs"]} <= set(links)
    assert PROMPT in page and "sdviz report euler-002.sdviz" in page
    loaded = sdviz.load_comparison(tmp_path)
    assert list(loaded) == [("euler", 2), ("euler", 3), ("ddim", 2), ("ddim", 3)]
    assert loaded[("ddim", 3)] == Trace.load(tmp_path / "ddim-003.sdviz") and loaded[("euler", 2)].compare_key
    assert list(sdviz.load_comparison(tmp_path / "index.json")) == list(loaded)


def test_load_comparison_refuses_what_is_not_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="no comparison at .*: pass the --out folder of `sdviz compare`"):
        sdviz.load_comparison(tmp_path)
    (tmp_path / "index.json").write_text('{"prompt": "x"}')
    with pytest.raises(ValueError, match="is not a comparison's index.json .KeyError"):
        sdviz.load_comparison(tmp_path)
    (tmp_path / "index.json").write_text('{"runs": [{"scheduler": "euler", "steps": 2, "trace": "../x.sdviz"}]}')
    with pytest.raises(ValueError, match="names a trace outside its folder: '../x.sdviz'"):
        sdviz.load_comparison(tmp_path)


@pytest.mark.slow
def test_two_processes_give_the_same_images(tmp_path):
    # both runs use one thread per process: float sums depend on the thread count, not on the split
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    worker = str(Path(__file__).with_name("compare_worker.py"))
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    for cmd in ([*launch, worker, str(tmp_path / "two")], [sys.executable, worker, str(tmp_path / "one")]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "index.json").read_text())
    one = json.loads((tmp_path / "one" / "index.json").read_text())
    assert (tmp_path / "two" / "processes.txt").read_text() == "2"
    assert (tmp_path / "one" / "processes.txt").read_text() == "1"
    keys = [(r["scheduler"], r["steps"]) for r in one["runs"]]
    assert keys == [(r["scheduler"], r["steps"]) for r in two["runs"]] and len(keys) == 6
    for a, b in zip(one["runs"], two["runs"], strict=True):
        ta, tb = Trace.load(tmp_path / "one" / a["trace"]), Trace.load(tmp_path / "two" / b["trace"])
        np.testing.assert_array_equal(np.asarray(ta.image), np.asarray(tb.image))
        assert ta.steps[-1].latents.equal(tb.steps[-1].latents)


def test_cli_refuses_an_out_with_another_comparison(tmp_path, capsys):
    argv = ["compare", PROMPT, "--steps", "2", "--out", str(tmp_path), "--device", "cpu"]
    assert main([*argv, "--schedulers", "euler,ddim"]) == 0
    first = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    capsys.readouterr()
    assert main([*argv, "--schedulers", "heun"]) == 2
    assert "index.json exists, written by an earlier `sdviz compare`; pass --overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == first
    (tmp_path / "notes.txt").write_text("mine")
    assert main([*argv, "--schedulers", "heun", "--overwrite"]) == 0
    index = json.loads((tmp_path / "index.json").read_text())
    assert [r["scheduler"] for r in index["runs"]] == ["heun"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "grid.png", "heun-002.png", "heun-002.sdviz", "index.html", "index.json", "notes.txt"]  # fmt: skip
