"""Bad arguments of the `sdviz` command (issue 15): exit status 2, one line on stderr, no traceback, nothing
written; in-process (fast), and a few rows in a real process for the real exit status."""

import json
import subprocess
import sys

import pytest
import torch
from bad_inputs import P

import sdviz
from sdviz.cli import main


@pytest.fixture()
def pipe(embedded_pipe):
    """The embedded model, loaded once for the session (every row fails before it runs)."""
    return embedded_pipe


# (argv, message): the CLI, in-process; every row exits 2 with one line on stderr
CLI = [
    # 1. sizes
    *[
        (["generate", "x", f"--{side}", v], m)
        for side in ("height", "width")
        for v, m in [
            ("60", f"{side} must be a multiple of 8"),
            ("100", "try 96 or 104"),
            ("0", f"--{side} must be an int in [1, 4096]"),
            ("-8", "in [1, 4096]"),
            ("5000", "in [1, 4096]"),
            ("abc", f"argument --{side}: invalid int value: 'abc'"),
            ("6.5", "invalid int value"),
        ]
    ],  # fmt: skip
    # 5. devices
    (["generate", "x", "--device", "gpu"], "unknown device 'gpu'"),
    (["generate", "x", "--device", "cuda:x"], "unknown device"),
    (["generate", "x", "--device", ""], "unknown device ''"),
    (["compare", "x", "--device", "tpu"], "unknown device 'tpu'"),
    # steps, seeds, guidance
    *[
        (["generate", "x", *a], m)
        for a, m in [
            (["--steps", "0"], "--steps must be an int >= 1"),
            (["--steps", "-3"], "--steps must be an int >= 1"),
            (["--steps", "2000"], "in [1, 1000]"),
            (["--steps", "1000", "--scheduler", "pndm"], "runs at most 999 steps"),
            (["--steps", "x"], "invalid int value: 'x'"),
            (["--seed", "-1"], "--seed must be an int in [0, 18446744073709551615], got -1\n"),  # no API hint
            (["--seed", str(2**64)], "seed must be an int in [0,"),
            (["--seed", "1.5"], "invalid int value"),
            (["--guidance-scale", "nan"], "guidance_scale must be a finite number >= 0, got nan"),
            (["--guidance-scale", "inf"], "finite"),
            (["--guidance-scale", "-2"], ">= 0"),
            (["--guidance-scale", "seven"], "invalid float value"),
            (["--scheduler", "eulr"], "did you mean 'euler'"),
            (["--scheduler", ""], "unknown scheduler"),
            (["--trace-dtype", "int8"], "invalid choice: 'int8'"),
            (["--model", ""], "model is an empty string"),
            (["--model", "/no/such/folder"], "no such file or folder"),
            (["--unknown"], "unrecognized arguments: --unknown"),
        ]
    ],  # fmt: skip
    (["generate"], "the following arguments are required: prompt"),
    (["nosuch"], "invalid choice: 'nosuch'"),
    # compare
    *[
        (["compare", "x", *a], m)
        for a, m in [
            (["--steps", "0"], "--steps must be an int >= 1"),
            (["--steps", "a,b"], "separated by commas"),
            (["--steps", ","], "separated by commas"),
            (["--steps", "10,2000"], "in [1, 1000]"),
            (["--schedulers", "eulr"], "did you mean 'euler'"),
            (["--schedulers", ","], "--schedulers needs"),
            (["--schedulers", "pndm", "--steps", "1000"], "runs at most 999 steps"),
            (["--guidance-scale", "nan"], "finite"),
            (["--seed", "-5"], "seed must be"),
        ]
    ],  # fmt: skip
    # 5. schedulers
    *[
        (["schedulers", *a], m)
        for a, m in [
            (["dpm++2m", "--steps", "2000"], "in [1, 1000]"),
            (["pndm", "--steps", "1000"], "PNDMScheduler runs at most 999"),
            (["lcm", "--steps", "51"], "LCMScheduler runs at most 50 steps"),
            (["euler", "--steps", "0"], "steps must be an int >= 1"),
            (["euler", "--steps", "-1"], ">= 1"),
            (["eulr"], "did you mean 'euler'"),
            (["--steps", "5"], "--steps needs a scheduler NAME"),
            (["euler", "--steps", "ten"], "invalid int value"),
            (["EDMEulerScheduler"], "c_noise"),
            (["describe"], "describe takes one scheduler NAME"),
            (["describe", "eulr"], "did you mean 'euler'"),
            (["euler", "heun"], "give one scheduler NAME to describe, or none"),
        ]
    ],  # fmt: skip
    # 5. evaluate
    *[
        (["evaluate", *a], m)
        for a, m in [
            (["--n-prompts", "1", "--steps", "0"], "--steps must be an int >= 1"),
            (["--n-prompts", "0"], "--n-prompts must be an int >= 1"),
            (["--n-prompts", "-1"], ">= 1"),
            (["--per-prompt", "0"], "--per-prompt must be an int >= 1"),
            (["--steps", "a"], "separated by commas"),
            (["--steps", ""], "separated by commas"),
            (["--scheduler", "eulr"], "did you mean"),
            (["--scheduler", ","], "--schedulers needs"),
            (["--guidance-scale", "nan"], "finite"),
            (["--n-prompts", "1", "--steps", "1000", "--scheduler", "pndm"], "runs at most 999 steps"),
        ]
    ],  # fmt: skip
    # 12. train: a step count of 0 would write an untrained model
    *[
        (["train", stage, *extra, opt, v], m)
        for stage, extra in (
            ("autoencoder", []),
            ("diffusion", ["--vae", "."]),
            ("checker", []),
            ("embedded", []),
        )
        for opt, v, m in [
            ("--steps", "0", "--steps must be an int >= 1"),
            ("--threads", "0", "--threads must be an int >= 1"),
        ]
        if not (stage == "embedded" and opt == "--steps")
    ],  # fmt: skip
    (["train", "autoencoder", "--batch-size", "0"], "--batch-size must be an int >= 1"),
    (["train", "embedded", "--decoder-steps", "-1"], "--decoder-steps must be an int >= 0"),
    (["train", "autoencoder", "--model", "gan"], "invalid choice: 'gan'"),
    (["train"], "the following arguments are required: STAGE"),
    # report
    (["report", "/no/such.sdviz"], "no trace file at /no/such.sdviz"),
]


if not torch.cuda.is_available():  # 5. cuda on a machine without it
    CLI += [(["generate", "x", "--device", "cuda"], "this machine has no CUDA device"),
            (["compare", "x", "--device", "cuda:0"], "no CUDA device")]  # fmt: skip


@pytest.fixture()
def cli(pipe, monkeypatch, tmp_path):
    """Run `sdviz` in-process in a fresh folder, with the module's pipeline for the embedded model; return the
    exit status."""
    import sdviz.pipeline

    monkeypatch.chdir(tmp_path)
    real = sdviz.pipeline.load_pipeline
    monkeypatch.setattr(
        sdviz.pipeline, "load_pipeline", lambda model=None, **k: pipe if model is None else real(model, **k)
    )

    def run(argv):
        try:
            return main(argv)
        except SystemExit as e:  # argparse's own errors
            return e.code

    return run


@pytest.mark.parametrize("argv, message", [pytest.param(a, m, id=" ".join(a)[:70]) for a, m in CLI])
def test_cli_refuses(cli, capsys, tmp_path, argv, message):
    rc = cli(argv)
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.iterdir())  # nothing was written


@pytest.fixture(scope="module")
def saved_trace(embedded_pipe_session, tmp_path_factory):
    trace = sdviz.generate(embedded_pipe_session, P, steps=1, scheduler="euler", attention=True)
    return trace.save(tmp_path_factory.mktemp("trace") / "t.sdviz")


KEYS = ["format", "prompt", "negative_prompt", "seed", "guidance_scale", "height", "width", "model", "scheduler",
        "scheduler_config", "tokens", "negative_tokens", "steps", "num_images", "complete", "prompts", "kept",
        "unet_evals", "wall_time", "error", "img2img", "compare_key", "latent_rgb"]  # fmt: skip


@pytest.mark.parametrize("key", KEYS)
def test_report_on_a_trace_with_one_damaged_key(cli, capsys, saved_trace, tmp_path, key):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(saved_trace), "pt") as f:
        meta = json.loads(f.metadata()["sdviz"])
    del meta[key]
    damaged = tmp_path / "damaged.sdviz"
    save_file(load_file(str(saved_trace)), str(damaged), metadata={"sdviz": json.dumps(meta)})
    rc = cli(["report", str(damaged)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(damaged) in err


@pytest.mark.parametrize("argv, message", [
    (["generate", "x", "--height", "60"], "height must be a multiple of 8"),
    (["schedulers", "dpm++2m", "--steps", "2000"], "in [1, 1000]"),
    (["evaluate", "--n-prompts", "1", "--steps", "0"], "--steps must be an int >= 1"),
    (["generate", "x", "--device", "gpu"], "unknown device 'gpu'"),
])  # fmt: skip
def test_cli_exit_status_in_a_real_process(tmp_path, argv, message):
    """The real exit status and stderr of the installed entry point (a few rows; the rest run in-process)."""
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "sdviz", *argv], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_bug_keeps_its_traceback(monkeypatch):
    """A TypeError from sdviz's own code is not a user's mistake: the CLI lets it through."""
    import sdviz.commands.schedulers as cmd

    def broken(*a, **k):
        raise TypeError("a bug")

    monkeypatch.setattr(cmd, "format_list", broken)
    with pytest.raises(TypeError, match="a bug"):
        main(["schedulers"])
