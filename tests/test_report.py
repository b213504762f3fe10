import base64
import io
import re
import shutil
import subprocess

import pytest
from PIL import Image

import sdviz
from sdviz.cli import main
from sdviz.report import render_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000"]


@pytest.fixture(scope="module")
def trace(embedded_pipe_session):
    return sdviz.generate(embedded_pipe_session, "a yellow digit 8 on a purple background", steps=6, seed=0,
                          attention=True, negative_prompt="blurry")


def _images(page: str) -> list[Image.Image]:
    uris = re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(u))) for u in uris]


def test_report_holds_every_section(trace):
    page = render_report(trace)
    for heading in ("What CLIP sees", "Schedule", "Denoising, step by step", "Latents", "Classifier-free guidance",
                    "Cross-attention"):
        assert f"<h2>{heading}</h2>" in page
    imgs = _images(page)
    assert len(imgs) == 6  # the final image + schedule, strip, latents, guidance, attention
    assert imgs[0].tobytes() == trace.image.tobytes()
    assert all(im.size[0] > 0 for im in imgs)
    assert "yellow&lt;/w&gt;" in page and "purple&lt;/w&gt;" in page and "blurry" in page
    assert "src=\"http" not in page and "<script" not in page  # self-contained


def test_truncated_tokens_are_marked(embedded_pipe):
    t = sdviz.generate(embedded_pipe, " ".join(["red"] * 80), steps=2, seed=0, keep=["latents"])
    page = render_report(t)
    assert page.count('<tr class="cut">') == 5 and "cut off" in page
    assert "Denoising, step by step" not in page  # x0 was not kept


@pytest.mark.parametrize("half", ["noise_pred_text", "noise_pred_uncond"])
def test_report_leaves_out_guidance_when_one_half_was_not_kept(embedded_pipe, half):
    t = sdviz.generate(embedded_pipe, "a red letter A on a blue background", steps=2, seed=0,
                       keep=["latents", "x0", half])
    page = render_report(t)
    assert "Denoising, step by step" in page and "Classifier-free guidance" not in page


def _chromium(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    assert CHROMIUM, "chromium is needed for this test: apt-get install chromium (.ci/run installs it)"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line or "ERR_FILE" in line]


@pytest.mark.slow
def test_chromium_renders_without_console_errors(trace, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_report(trace), encoding="utf-8")
    shot = tmp_path / "shot.png"
    done = _chromium(["--window-size=1200,2000", f"--screenshot={shot}", page.as_uri()], tmp_path)
    assert shot.is_file(), done.stderr[-2000:]
    assert _console_errors(done.stderr) == []
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 500  # pictures were drawn, not a blank page
    dom = _chromium(["--dump-dom", page.as_uri()], tmp_path).stdout
    assert dom.count("<img") == 6


@pytest.mark.slow
def test_console_error_detection_can_fail(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="missing.png"><script>not_defined()</script></body></html>')
    done = _chromium(["--dump-dom", bad.as_uri()], tmp_path)
    assert _console_errors(done.stderr)


def test_cli_report_and_generate_report(tmp_path, capsys):
    assert main(["generate", "a white letter K on a green background", "--steps", "3", "--report",
                 "--out", str(tmp_path), "--device", "cpu"]) == 0
    html_files = list(tmp_path.glob("*.html"))
    assert len(html_files) == 1 and "linear map fitted" in html_files[0].read_text()
    trace_file = next(tmp_path.glob("*.sdviz"))
    out = tmp_path / "again.html"
    assert main(["report", str(trace_file), "--out", str(out)]) == 0
    assert out.is_file() and f"report: {out}" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing.sdviz")]) == 2


def test_cli_reports_several_traces(embedded_pipe_session, tmp_path, capsys):
    files = [sdviz.generate(embedded_pipe_session, p, steps=2).save(tmp_path / f"{i}.sdviz")
             for i, p in enumerate(["a red letter A on a blue background", "a green digit 3 on a white background"])]  # fmt: skip
    assert main(["report", *map(str, files), "--out", str(tmp_path / "pages")]) == 0
    pages = sorted((tmp_path / "pages").iterdir())
    assert [p.name for p in pages] == ["0.html", "1.html"] and "green digit 3" in pages[1].read_text()
    assert main(["report", *map(str, files)]) == 0  # beside each trace
    assert (tmp_path / "0.html").is_file() and (tmp_path / "1.html").is_file()
    capsys.readouterr()
    assert main(["report", *map(str, files), "--out", str(tmp_path / "one.html")]) == 2
    assert "is one page but 2 traces were given" in capsys.readouterr().err
    assert main(["report", str(files[0]), str(tmp_path / "missing.sdviz"), "--out", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none").exists()  # every file is read before any page is written
