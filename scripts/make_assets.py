"""Regenerate what the README and the notebooks show, from the embedded model.

    python scripts/make_assets.py                 # everything
    python scripts/make_assets.py notebooks       # or any of: pictures notebooks jupyterlab

pictures: the sample grid, a prompt emerging from noise, sdviz's plots and the report (assets/);
notebooks: runs the three notebooks in place, so that a code host shows their outputs (small PNGs);
jupyterlab: the step scrubber in a real JupyterLab (assets/jupyterlab-step-scrubber.png).
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import EulerDiscreteScheduler
from PIL import Image, ImageDraw

import sdviz
from sdviz import preview
from sdviz.train.data import caption

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
sys.path.insert(0, str(ROOT / "tests"))  # the notebook runner and the JupyterLab driver the tests use
PROMPT = "a red letter A on a blue background"
GRID = [("A", "red", "blue"), ("7", "yellow", "black"), ("G", "white", "purple"), ("3", "blue", "orange"),
        ("R", "black", "white"), ("K", "green", "yellow"), ("5", "orange", "green"), ("Z", "purple", "white")]
STRIP_STEPS = (0, 3, 6, 9, 12, 15, 18, 21, 24)
SCALE = 3  # pixels per model pixel in the pictures


def pictures() -> None:
    """Draw the README's pictures of the embedded model and of sdviz."""
    ASSETS.mkdir(exist_ok=True)
    pipe = sdviz.load_pipeline(device="cpu")
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    prompts = [caption(*g) for g in GRID]
    gens = [torch.Generator().manual_seed(i) for i in range(len(prompts))]
    images = pipe(prompts, num_inference_steps=25, guidance_scale=7.5, generator=gens).images
    size = images[0].width * SCALE
    grid = Image.new("RGB", (size * len(images), size))
    for i, im in enumerate(images):
        grid.paste(im.resize((size, size), Image.NEAREST), (i * size, 0))
    grid.save(ASSETS / "embedded-sample.png")

    seen: dict[int, torch.Tensor] = {}

    def keep(pipe, i, t, kw):
        if i in STRIP_STEPS:
            sigma = pipe.scheduler.sigmas[i + 1]
            seen[i] = kw["latents"] / (sigma**2 + 1) ** 0.5  # as the UNet sees x_t: unit variance
        return kw

    pipe(PROMPT, num_inference_steps=25, guidance_scale=7.5, generator=torch.Generator().manual_seed(0),
         callback_on_step_end=keep)  # fmt: skip
    strip = Image.new("RGB", (size * len(STRIP_STEPS), size + 16), "white")
    draw = ImageDraw.Draw(strip)
    with torch.no_grad():
        for k, i in enumerate(STRIP_STEPS):
            (im,) = preview.decode(pipe.vae, seen[i])
            strip.paste(im.resize((size, size), Image.NEAREST), (k * size, 0))
            draw.text((k * size + 4, size + 2), f"step {i + 1}", fill="black")
    strip.save(ASSETS / "embedded-steps.png")
    print(ASSETS / "embedded-sample.png", ASSETS / "embedded-steps.png")
    traced_pictures()


def traced_pictures() -> None:
    """Draw the README's pictures of sdviz itself (plots and the report) from one captured run."""
    import shutil
    import subprocess
    import tempfile

    from matplotlib.figure import Figure

    from sdviz import plot, schedulers
    from sdviz.report import write_report

    pipe = sdviz.load_pipeline(device="cpu")
    pipe.set_progress_bar_config(disable=True)
    # DAAM's layers, as `sdviz evaluate --attention` scores them: the 2x2 mid block's maps carry no place
    trace = sdviz.generate(pipe, PROMPT, steps=25, scheduler="euler", seed=0, attention={"layers": "daam"})
    fit = preview.fit_latent_rgb(pipe.vae)
    trace.latent_rgb = fit
    steps = [0, 4, 8, 12, 16, 20, 24]
    decoded = preview.decode(pipe.vae, torch.cat([trace.steps[i].x0 for i in steps]))
    fig = Figure(figsize=(12, 5.4), layout="constrained")
    plot.plot_step_strip(trace, steps=steps, preview=fit, decoded=decoded, fig=fig)
    fig.savefig(ASSETS / "step-strip.png", dpi=80)

    fig = Figure(figsize=(12, 2.2), layout="constrained")
    plot.plot_prompt_attention(trace, fig=fig)
    fig.savefig(ASSETS / "attention.png", dpi=80)

    sd15 = schedulers.sd15_config()
    runs = {n: schedulers.schedule(n, 25, sd15) for n in ["euler", "ddim", "heun", "dpm++2m_karras", "lms"]}
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    plot.plot_sigmas(runs, ax=axes[0], x="fraction")
    plot.plot_timesteps(runs, ax=axes[1], x="fraction")
    fig.savefig(ASSETS / "schedules.png", dpi=80)

    grid = sdviz.compare(pipe, "a green digit 3 on a white background",
                         schedulers=["euler", "euler_a", "ddim", "heun", "dpm++2m"], steps=[5, 10, 25], seed=0)
    fig = Figure(figsize=(6, 10), layout="constrained")
    plot.plot_compare_grid(grid, fig=fig)
    fig.savefig(ASSETS / "compare-grid.png", dpi=80)

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("assets/report.png needs chromium: apt-get install chromium")
    with tempfile.TemporaryDirectory() as d:
        page = write_report(trace, f"{d}/report.html")
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={d}/profile", "--window-size=1100,1500", "--hide-scrollbars",
                        f"--screenshot={ASSETS / 'report.png'}", page.as_uri()],
                       check=True, capture_output=True)  # fmt: skip
    print(*(ASSETS / n for n in ["step-strip.png", "attention.png", "schedules.png", "compare-grid.png", "report.png"]))


def notebooks() -> None:
    """Run the three notebooks in place, top to bottom in fresh kernels, with their pictures shrunk."""
    import nbformat
    from notebook_runner import execute, problems, shrink_pngs

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        with tempfile.TemporaryDirectory() as work:
            nb = execute(path, Path(work))
        shrink_pngs(nb)
        if problems(nb):
            raise SystemExit(f"{path.name}: " + "; ".join(problems(nb)))
        nbformat.write(nb, path)
        print(path, f"{path.stat().st_size // 1000} kB")


def jupyterlab() -> None:
    """Screenshot the step scrubber of notebook 01 in JupyterLab, as tests/test_jupyterlab.py drives it."""
    from jupyterlab_driver import CHROMIUM, Lab, tour
    from jupyterlab_driver import jupyterlab as server
    from PIL import Image, ImageChops
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as d, server(Path(d)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        seen = tour(Lab(browser.new_page(viewport={"width": 1400, "height": 1000}), url), ROOT / "notebooks", Path(d),
                    Path(d) / "shots")  # fmt: skip
        browser.close()
        if seen["console_errors"] or seen["errors_in_notebook"]:
            raise SystemExit(f"JupyterLab reported errors: {seen}")
        shot = Image.open(Path(d) / "shots" / "step-scrubber.png").convert("RGB")
        blank = Image.new("RGB", shot.size, shot.getpixel((shot.width - 1, shot.height - 1)))
        box = ImageChops.difference(shot, blank).getbbox()  # the cell's empty right-hand side goes
        shot = shot.crop((0, 0, min(shot.width, box[2] + 16), shot.height))
        out = ASSETS / "jupyterlab-step-scrubber.png"
        shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    print(out)


if __name__ == "__main__":
    targets = {"pictures": pictures, "notebooks": notebooks, "jupyterlab": jupyterlab}
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="*", help=f"any of {', '.join(targets)} (default: everything)")
    chosen = ap.parse_args().what or list(targets)
    if set(chosen) - set(targets):
        ap.error(f"choose from {', '.join(targets)}; got {', '.join(chosen)}")
    for name in chosen:
        targets[name]()
