import re

import pytest
from PIL import Image

from sdviz.cli import build_parser, main
from sdviz.trace import Trace


def test_generate_writes_png(tmp_path, capsys):
    rc = main(["generate", "a red letter A on a blue background", "--steps", "3", "--out", str(tmp_path), "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    pngs = list(tmp_path.glob("*.png"))
    assert len(pngs) == 1 and str(pngs[0]) in out
    assert Image.open(pngs[0]).size == (64, 64)
    trace = Trace.load(pngs[0].with_suffix(".sdviz"))
    assert trace.prompt == "a red letter A on a blue background" and len(trace.steps) == 3
    assert trace.scheduler == "EulerDiscreteScheduler"
    assert trace.image.tobytes() == Image.open(pngs[0]).convert("RGB").tobytes()


def test_generate_can_keep_the_models_own_scheduler(tmp_path):
    rc = main(["generate", "a red letter A on a blue background", "--steps", "3", "--scheduler", "own",
               "--out", str(tmp_path), "--device", "cpu"])  # fmt: skip
    assert rc == 0
    trace = Trace.load(next(tmp_path.glob("*.sdviz")))
    assert trace.scheduler == "PNDMScheduler" and len(trace.steps) == 4  # PNDM: 3 steps, 4 evaluations


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in commands:
        assert name in text


def test_each_command_has_help(capsys):
    parser = build_parser()
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        text = sub.format_help()
        assert sub.description, name
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.dest} has no help"
        assert "usage" in text


def test_bad_model_is_a_clean_error(tmp_path, capsys):
    rc = main(["generate", "x", "--model", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert rc == 2
    assert "error: no such file or folder" in capsys.readouterr().err


def test_generate_with_attention(tmp_path):
    rc = main(["generate", "a green digit 2 on a white background", "--steps", "2", "--attention", "--out", str(tmp_path)])
    assert rc == 0
    trace = Trace.load(next(tmp_path.glob("*.sdviz")))
    assert trace.attention is not None and trace.attention.word_map("green").shape == (8, 8)
    pngs = sorted(p.name for p in tmp_path.glob("*-attention-*.png"))  # one per word, beside the image, as daam's
    stem = next(tmp_path.glob("*.sdviz")).stem + "-attention"
    assert re.fullmatch(r"a-green-digit-2-on-a-white-background-seed0-[0-9a-f]{8}-attention", stem)
    assert pngs == [f"{stem}-{i:02d}-{w}.png" for i, w in
                    enumerate(["a-1", "green", "digit", "2", "on", "a-2", "white", "background"])]  # fmt: skip
    with Image.open(tmp_path / pngs[1]) as im:
        assert im.size == (64, 64) and im.mode == "RGB"


@pytest.mark.parametrize("prompts", [("日本語", "中文"), ("A cat.", "a cat!"),
                                     ("a red letter A on a blue background, " + "x" * 10, "a red letter A on a blue background, " + "y" * 10)])  # fmt: skip
def test_prompts_that_slug_alike_get_their_own_files(tmp_path, capsys, prompts):
    for prompt in prompts:
        assert main(["generate", prompt, "--steps", "2", "--out", str(tmp_path), "--device", "cpu"]) == 0
    traces = sorted(tmp_path.glob("*.sdviz"))
    assert len(traces) == 2 and len(list(tmp_path.glob("*.png"))) == 2
    assert sorted(Trace.load(t).prompt for t in traces) == sorted(prompts)
    out = capsys.readouterr().out
    assert all(f"trace: {t}" in out for t in traces)  # says what it wrote


def test_a_rerun_refuses_to_overwrite_unless_asked(tmp_path, capsys):
    argv = ["generate", "a red letter A on a blue background", "--steps", "2", "--out", str(tmp_path), "--device", "cpu"]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main([*argv, "--guidance-scale", "3"]) == 0  # other settings: other files
    assert len(list(tmp_path.glob("*.png"))) == 2
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "exists, written by a run with the same settings; pass --overwrite" in err and err.count("\n") == 1
    assert all((tmp_path / n).read_bytes() == b for n, b in before.items())  # refused before the model ran
    assert main([*argv, "--overwrite"]) == 0
