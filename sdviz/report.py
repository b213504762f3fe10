"""One self-contained HTML page per run, drawn from a Trace alone (images embedded as PNG data URIs), and the
index page of a comparison (`sdviz compare --out`): its grid picture and a table of the runs."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from PIL import Image

from sdviz import plot
from sdviz.latent_rgb import LatentRGB
from sdviz.tokens import TokenInfo
from sdviz.trace import Trace

_CSS = """
body { font-family: system-ui, -apple-system, 'DejaVu Sans', sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1.2em; font-size: 0.92em; }
.meta dt { color: #666; } .meta dd { margin: 0; font-family: 'DejaVu Sans Mono', monospace; }
.hero { display: flex; gap: 2em; align-items: flex-start; flex-wrap: wrap; }
.hero img.final, img.mask { width: 256px; height: auto; image-rendering: pixelated; border: 1px solid #ccc; }
table.tokens { border-collapse: collapse; font-family: 'DejaVu Sans Mono', monospace; font-size: 0.85em; }
table.tokens td, table.tokens th { border: 1px solid #ddd; padding: 2px 6px; text-align: left; }
table.tokens tr.cut td { background: #fde2e2; color: #900; }
table.runs { border-collapse: collapse; font-size: 0.9em; }
table.runs td, table.runs th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
table.runs img { width: 64px; height: 64px; image-rendering: pixelated; }
figure { margin: 0.5em 0; } figure img { max-width: 100%; } figcaption { color: #666; font-size: 0.85em; }
.warn { color: #900; }
"""


def _page(title: str, body: str, footer: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head>\n<body>\n{body}\n"
        f"<footer><p><small>{html.escape(footer)}</small></p></footer>\n</body></html>\n"
    )


def _png(fig: Figure) -> str:
    # a bare Figure (no pyplot): drawing a report never touches the caller's backend or open figures
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _image_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(uri: str, caption: str, alt: str) -> str:
    return f'<figure><img src="{uri}" alt="{html.escape(alt)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def _meta(trace: Trace) -> str:
    rows = [("pipeline", trace.pipeline)] if trace.pipeline else []
    rows += [
        ("prompt", trace.prompt),
        ("negative prompt", trace.negative_prompt or "(none)"),
        ("model", trace.model),
        ("scheduler", trace.scheduler),
        ("steps", f"{trace.num_inference_steps} ({len(trace.steps)} UNet evaluations)"),
        ("guidance scale", f"{trace.guidance_scale:g}"),
        ("seed", str(trace.seed)),
        ("size", f"{trace.width} x {trace.height}"),
    ]
    if trace.wall_time is not None:
        rows.append(("wall time", f"{trace.wall_time:.2f} s"))
    if trace.img2img is not None:
        what = "inpainting" if trace.mask is not None else "img2img"
        rows.append((f"{what} strength", f"{trace.img2img.strength:g}"))
        if trace.img2img.denoising_start is not None:
            rows.append(("denoising start", f"{trace.img2img.denoising_start:g}"))
    if trace.denoising_end is not None:
        rows.append(("denoising end", f"{trace.denoising_end:g}"))
    if not trace.complete:
        rows.append(("state", "incomplete: " + (trace.error or "interrupted")))
    cells = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in rows)
    return f'<dl class="meta">{cells}</dl>'


def _tokens(info: TokenInfo | None) -> str:
    if info is None:
        return "<p>No tokens recorded.</p>"
    rows = ["<tr><th>position</th><th>id</th><th>token</th><th>mask</th></tr>"]
    for pos in range(info.length):
        rows.append(
            f"<tr><td>{pos}</td><td>{info.input_ids[pos]}</td><td>{html.escape(info.tokens[pos])}</td>"
            f"<td>{info.attention_mask[pos]}</td></tr>"
        )
    pad = len(info.input_ids) - info.length
    if pad:
        tok = html.escape(info.tokens[-1])
        rows.append(f"<tr><td colspan=4>... {pad} padding positions (id {info.input_ids[-1]} {tok}, mask 0)</td></tr>")
    for tok, i in zip(info.truncated, info.truncated_ids, strict=True):
        rows.append(f'<tr class="cut"><td>cut</td><td>{i}</td><td>{html.escape(tok)}</td><td>-</td></tr>')
    note = (
        f'<p class="warn">{len(info.truncated)} token(s) did not fit in the 77 positions and were cut off.</p>'
        if info.truncated else ""
    )
    return note + '<table class="tokens">' + "".join(rows) + "</table>"


# SDXL's micro-conditioning, in the order of its time ids (the refiner's fifth is the aesthetic score)
_TIME_IDS = ["original height", "original width", "crop top", "crop left", "target height", "target width"]


def _added_cond(trace: Trace) -> str:
    cond = trace.added_cond or {}
    rows = ["<tr><th>what</th><th>prompt</th><th>negative</th></tr>"]
    ids, neg = cond.get("time_ids"), cond.get("negative_time_ids")
    if ids is not None:
        names = _TIME_IDS if ids.shape[-1] == 6 else [*_TIME_IDS[:4], "aesthetic score"]
        for i, name in enumerate(names[: ids.shape[-1]]):
            other = f"{float(neg[0, i]):g}" if neg is not None else "-"
            rows.append(f"<tr><td>{name}</td><td>{float(ids[0, i]):g}</td><td>{other}</td></tr>")
    emb, neg_emb = cond.get("text_embeds"), cond.get("negative_text_embeds")
    if emb is not None:
        other = f"{float(neg_emb[0].norm()):.3f}" if neg_emb is not None else "-"
        rows.append(f"<tr><td>pooled text embedding ({emb.shape[-1]}), norm</td><td>{float(emb[0].norm()):.3f}</td>"
                    f"<td>{other}</td></tr>")  # fmt: skip
    return '<table class="tokens">' + "".join(rows) + "</table>"


def _mask(trace: Trace) -> str:
    mask = trace.mask
    grey = Image.fromarray((mask.clamp(0, 1) * 255).round().to(torch.uint8).numpy(), "L")
    where = f"{mask.shape[1]} x {mask.shape[0]}"
    if trace.image is not None and grey.size != trace.image.size:
        grey = grey.resize(trace.image.size, Image.NEAREST)
        where += ", the latent mask the UNet saw, enlarged"
    caption = f"white: repainted, {float(mask.mean()):.0%} of the image (mask {where})"
    return (f'<figure><img class="mask" src="{_image_uri(grey)}" alt="mask">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")  # fmt: skip


def render_report(trace: Trace, *, preview: LatentRGB | None = None, strip_steps: int = 6) -> str:
    """Return the HTML page of one run.

    Args:
        trace: the run.
        preview: a latent -> RGB map for x_t and x0 pictures; the trace's own (`trace.latent_rgb`) when None,
            else false colour.
        strip_steps: how many steps the step strip shows.

    Returns:
        The page, self-contained: every image is embedded.
    """
    preview = preview or trace.latent_rgb
    parts = [f"<h1>{html.escape(trace.prompt)}</h1>", '<div class="hero">']
    if trace.image is not None:
        parts.append(f'<img class="final" src="{_image_uri(trace.image)}" alt="final image">')
    parts += [_meta(trace), "</div>", "<h2>What CLIP sees</h2>", _tokens(trace.tokens)]
    if trace.tokens_2 is not None:
        parts += ["<h2>What the second text encoder sees</h2>", _tokens(trace.tokens_2)]
    if trace.added_cond:
        parts += ["<h2>Added conditioning (SDXL)</h2>", _added_cond(trace)]
    if trace.mask is not None:
        parts += ["<h2>Inpainting mask</h2>", _mask(trace)]

    if len(trace.steps):
        fig = Figure(figsize=(10, 3.2), layout="constrained")
        axes = fig.subplots(1, 2)
        plot.plot_sigmas(trace, ax=axes[0])
        plot.plot_timesteps(trace, ax=axes[1])
        parts += ["<h2>Schedule</h2>", _figure(_png(fig), "noise level sigma and timestep per UNet evaluation", "schedule")]

        kept = [s.index for s in trace.steps if s.latents is not None and s.x0 is not None]
        if kept:
            n = min(strip_steps, len(kept))
            chosen = [kept[round(i * (len(kept) - 1) / max(1, n - 1))] for i in range(n)]
            chosen = sorted(set(chosen))
            fig = Figure(figsize=(1.7 * len(chosen), 3.6), layout="constrained")
            plot.plot_step_strip(trace, steps=chosen, preview=preview, fig=fig)
            how = "a linear map fitted to the model's VAE" if preview is not None else "false colour (no fitted preview)"
            parts += ["<h2>Denoising, step by step</h2>",
                      _figure(_png(fig), f"x_t (top) and predicted x0 (bottom), latents shown by {how}", "step strip")]
            fig = Figure(figsize=(10, 2.8), layout="constrained")
            plot.plot_latent_channels(trace, step=kept[-1], fig=fig)
            parts += ["<h2>Latents</h2>", _figure(_png(fig), f"the 4 latent channels after step {kept[-1]}", "latents")]

        # the guidance plot needs both halves; a run may have kept only one
        if any(s.noise_pred_text is not None and s.noise_pred_uncond is not None for s in trace.steps):
            fig = Figure(figsize=(7, 3.2), layout="constrained")
            plot.plot_guidance_norms(trace, ax=fig.add_subplot())
            parts += ["<h2>Classifier-free guidance</h2>",
                      _figure(_png(fig), "norms of the text and unconditional noise predictions and their difference", "guidance")]

    n_words = len(trace.attention.words()) if trace.attention is not None else 0
    if trace.attention is not None and not n_words:
        parts += ["<h2>Cross-attention</h2>", "<p>The prompt has no words, so there is no word map to show.</p>"]
    elif trace.attention is not None:
        fig = Figure(figsize=(1.8 * n_words, 2.2), layout="constrained")
        plot.plot_prompt_attention(trace, fig=fig)
        parts += ["<h2>Cross-attention</h2>",
                  _figure(_png(fig), "where each word of the prompt attends, averaged over steps and layers", "attention")]

    return _page(f"sdviz: {trace.prompt}", "\n".join(parts), "made by sdviz from one trace")


def write_report(trace: Trace, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Write `render_report(trace, **kwargs)` to `path`.

    Args:
        trace: the run.
        path: the HTML file to write.
        **kwargs: as in `render_report`.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(trace, **kwargs), encoding="utf-8")
    return path


def write_comparison_page(results: Mapping[tuple[str, int], Trace], index: str | os.PathLike) -> Path:
    """Write `grid.png` and `index.html` next to a comparison's `index.json` (`sdviz.comparison.write_index`).

    Args:
        results: `sdviz.compare`'s {(scheduler, steps): Trace}.
        index: the index.json that `write_index` wrote; its folder receives the two files.

    Returns:
        The path of index.html; it shows the grid and links every run's image and trace.
    """
    index = Path(index)
    meta = json.loads(index.read_text())
    names = len({k[0] for k in results})
    counts = len({k[1] for k in results})
    fig = Figure(figsize=(1.9 * counts + 0.6, 2.1 * names), layout="constrained")
    plot.plot_compare_grid(results, fig=fig)
    fig.savefig(index.parent / "grid.png", dpi=80)
    rows = ["<tr><th>scheduler</th><th>steps</th><th>image</th><th>UNet evaluations</th><th>wall time</th>"
            "<th>trace</th></tr>"]  # fmt: skip
    for r in meta["runs"]:
        image, trace = html.escape(r["image"]), html.escape(r["trace"])
        rows.append(
            f"<tr><td>{html.escape(r['scheduler'])}</td><td>{r['steps']}</td>"
            f'<td><a href="{image}"><img src="{image}" alt="{html.escape(r["scheduler"])}, {r["steps"]} steps"></a></td>'
            f"<td>{r['unet_evals']}</td><td>{r['wall_time_s']:.2f} s</td>"
            f'<td><a href="{trace}">{trace}</a> (<code>sdviz report {trace}</code>)</td></tr>'
        )
    settings = [("seed", meta["seed"]), ("guidance scale", meta["guidance_scale"]), ("model", meta["model"])]
    cells = "".join(f"<dt>{k}</dt><dd>{html.escape(str(v))}</dd>" for k, v in settings)
    body = "\n".join([
        f"<h1>{html.escape(meta['prompt'])}</h1>", f'<dl class="meta">{cells}</dl>', "<h2>Grid</h2>",
        '<figure><img src="grid.png" alt="comparison grid"><figcaption>schedulers down, step counts across; '
        "the same seed and initial noise in every run</figcaption></figure>",
        "<h2>Runs</h2>", '<table class="runs">' + "".join(rows) + "</table>",
    ])  # fmt: skip
    path = index.parent / "index.html"
    path.write_text(_page(f"sdviz compare: {meta['prompt']}", body, "made by sdviz compare"), encoding="utf-8")
    return path
