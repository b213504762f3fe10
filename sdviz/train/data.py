"""Captioned glyph images, rendered offline from the fonts matplotlib ships: `a red letter A on a blue background`."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from sdviz.images import pil_to_tensor, tensor_to_pil

IMAGE_SIZE = 64
LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
DIGITS = tuple("0123456789")
CHARS = LETTERS + DIGITS  # class index = position in this tuple
# RGB values chosen far apart so that the nearest palette colour is unambiguous.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 230),
    "yellow": (250, 225, 40),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
    "orange": (250, 140, 10),
    "purple": (140, 40, 180),
}
COLORS = tuple(PALETTE)
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
)  # fmt: skip
MAX_ROTATION = 15.0  # degrees; more would confuse 6/9 and M/W
MARGIN = 4  # pixels between the glyph and the border, which the colour check reads as background
_RENDER_SIZE = 128  # font size of the master glyph, scaled down after rotation


@dataclass(frozen=True)
class Labels:
    """What an image shows."""

    char: str
    fg: str
    bg: str
    font: str

    @property
    def kind(self) -> str:
        return "digit" if self.char in DIGITS else "letter"

    @property
    def char_index(self) -> int:
        return CHARS.index(self.char)


def caption(char: str, fg: str, bg: str) -> str:
    """Return the caption of a glyph: `a {fg} {kind} {char} on a {bg} background`."""
    _check(char, fg, bg)
    kind = "digit" if char in DIGITS else "letter"
    return f"a {fg} {kind} {char} on a {bg} background"


def all_prompts() -> list[tuple[str, str, str]]:
    """Return every (char, fg, bg) the grammar allows, in a fixed order (36 x 8 x 7 = 2016)."""
    return [(c, f, b) for c in CHARS for f in COLORS for b in COLORS if f != b]


def font_path(name: str) -> Path:
    """Return the path of one of matplotlib's bundled fonts."""
    import matplotlib

    if name not in FONT_FILES:
        raise ValueError(f"unknown font {name!r}; choose one of {', '.join(FONT_FILES)}")
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name


@cache
def _font(name: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), _RENDER_SIZE)


@lru_cache(maxsize=4096)
def _master(char: str, font: str) -> Image.Image:
    """Return the glyph as a tight antialiased mask ("L") at the master size."""
    f = _font(font)
    left, top, right, bottom = f.getbbox(char)
    mask = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(mask).text((4 - left, 4 - top), char, font=f, fill=255)
    return mask.crop(mask.getbbox())


def render(
    char: str,
    fg: str,
    bg: str,
    font: str,
    rng: random.Random,
    size: int = IMAGE_SIZE,
    shade: float = 0.0,
    light: float = 0.0,
    spread: tuple[float, float] = (0.0, 0.0),
) -> Image.Image:
    """Render one glyph with a random rotation, scale and position, fully inside the image.

    Args:
        char: one of `CHARS` (A-Z, 0-9).
        fg: the glyph's colour, a name of `PALETTE`.
        bg: the background's colour, a name of `PALETTE`, not `fg`.
        font: one of `FONT_FILES`.
        rng: the source of randomness; the same state gives the same image.
        size: the side of the square image in pixels.
        shade: how far each colour may move from its palette value, as a fraction of the distance to the nearest
            other palette colour (0: exact palette colours). Drawn after everything else, so 0 renders as before.
        light: the largest brightness change of a linear light gradient across the image, as a fraction (0: flat
            light), in a random direction; drawn after the shades.
        spread: (glyph, background): where positive, that colour is drawn by `spread_of` instead, with Gaussian
            shades of this std that may cross into a neighbouring colour.

    Returns:
        An RGB image of `size` x `size`.
    """
    _check(char, fg, bg)
    angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION)
    height = rng.uniform(0.55, 0.8) * size  # of the upright glyph
    mask = _master(char, font).rotate(angle, resample=Image.BICUBIC, expand=True)
    mask = mask.crop(mask.getbbox())
    scale = height / _master(char, font).height
    w, h = max(1, round(mask.width * scale)), max(1, round(mask.height * scale))
    room = size - 2 * MARGIN
    if w > room or h > room:  # wide glyphs (W, M) shrink to fit
        shrink = min(room / w, room / h)
        w, h = max(1, int(w * shrink)), max(1, int(h * shrink))
    mask = mask.resize((w, h), Image.LANCZOS)
    x = rng.randint(MARGIN, size - MARGIN - w)
    y = rng.randint(MARGIN, size - MARGIN - h)
    fg_rgb, bg_rgb = (_colour(c, rng, shade, s) for c, s in zip((fg, bg), spread, strict=True))
    image = Image.new("RGB", (size, size), bg_rgb)
    image.paste(Image.new("RGB", (w, h), fg_rgb), (x, y), mask)
    return lit(image, rng, light) if light else image


def lit(image: Image.Image, rng: random.Random, light: float) -> Image.Image:
    """Return `image` under a linear brightness gradient of random direction and strength up to `light`."""
    angle, strength = rng.uniform(0, 2 * math.pi), rng.uniform(0, light)
    r = np.linspace(-1, 1, image.width)
    ramp = math.cos(angle) * r[None, :] + math.sin(angle) * r[:, None]  # (H, W) in [-2, 2]
    a = np.asarray(image, dtype=np.float64) * (1 + strength * ramp / 2)[..., None]
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8))


def _colour(color: str, rng: random.Random, shade: float, spread: float) -> tuple[int, int, int]:
    """Return one colour of a render: overlapping shades if `spread`, else shades in a ball if `shade`, else exact."""
    if spread:
        return spread_of(color, rng, spread)
    return shade_of(color, rng, shade) if shade else PALETTE[color]


def shade_of(color: str, rng: random.Random, shade: float) -> tuple[int, int, int]:
    """Return a random shade of a palette colour: uniform in a ball of radius `shade` x its nearest neighbour distance.

    A named colour covering a range of shades, as in photographs, keeps the conditional denoiser following the
    input's own shade at low noise; with exact palette values it ignores the input, and guidance then turns the
    denoiser against its input (see `benchmarks/RESULTS.md`, embedded model v2).
    """
    radius = shade * _nearest_distance(color)
    d = np.array([rng.gauss(0, 1) for _ in range(3)])
    d *= radius * rng.random() ** (1 / 3) / max(np.linalg.norm(d), 1e-9)
    return _offset(color, d)


def spread_of(color: str, rng: random.Random, spread: float) -> tuple[int, int, int]:
    """Return a random shade of a palette colour: Gaussian, std `spread` x its nearest neighbour distance per channel.

    Unlike `shade_of`'s, these shades overlap the neighbouring colours (at 0.5, 74 % of them are nearest their own
    name), so that a colour word predicts its image only softly, as a caption does for SD, which keeps the guided
    ODE smooth enough for multistep schedulers (see `benchmarks/RESULTS.md`, colour shades that overlap).
    """
    return _offset(color, np.array([rng.gauss(0, 1) for _ in range(3)]) * spread * _nearest_distance(color))


def _offset(color: str, d: np.ndarray) -> tuple[int, int, int]:
    """Return a palette colour moved by `d` in RGB, rounded and clipped to valid values."""
    base = np.array(PALETTE[color], dtype=np.float64)
    return tuple(int(v) for v in np.clip(np.round(base + d), 0, 255))


@cache
def _nearest_distance(color: str) -> float:
    base = np.array(PALETTE[color], dtype=np.float64)
    return min(float(np.linalg.norm(base - np.array(PALETTE[c]))) for c in COLORS if c != color)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """Turn an RGB image into a (3, H, W) float tensor in [-1, 1]."""
    return pil_to_tensor(image)


def to_image(x: torch.Tensor) -> Image.Image:
    """Turn a (3, H, W) tensor in [-1, 1] into an RGB image."""
    return tensor_to_pil(x)[0]


def sample_labels(rng: random.Random) -> Labels:
    """Draw a character, two distinct colours and a font uniformly."""
    fg, bg = rng.sample(COLORS, 2)
    return Labels(rng.choice(CHARS), fg, bg, rng.choice(FONT_FILES))


class GlyphDataset(torch.utils.data.Dataset):
    """`n` captioned glyphs, the i-th a pure function of (`seed`, i); rendered on access.

    Items are `(image, caption, labels)`: a (3, 64, 64) tensor in [-1, 1], the caption string, `Labels`.
    """

    def __init__(
        self,
        n: int,
        seed: int = 0,
        size: int = IMAGE_SIZE,
        shade: float = 0.0,
        light: float = 0.0,
        spread: tuple[float, float] = (0.0, 0.0),
    ):
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        if not 0 <= shade < 0.5:
            raise ValueError(f"shade must be in [0, 0.5) so that every shade stays nearest its own colour, got {shade}")
        if not 0 <= light < 0.5:
            raise ValueError(f"light must be in [0, 0.5), got {light}")
        if len(spread) != 2 or not all(0 <= v <= 1 for v in spread):
            raise ValueError(f"spread must be two stds in [0, 1], (glyph, background), got {spread!r}")
        self.n, self.seed, self.size, self.shade, self.light = n, seed, size, shade, light
        self.spread = tuple(spread)

    def __len__(self) -> int:
        return self.n

    def settings(self) -> dict[str, float | int | list[float]]:
        """Return what fixes the items, so that a cache of them can tell whether it holds these glyphs."""
        settings = {"n": self.n, "seed": self.seed, "size": self.size, "shade": self.shade, "light": self.light}
        return settings | ({"spread": list(self.spread)} if any(self.spread) else {})  # as caches without it wrote

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str, Labels]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        rng = random.Random(f"{self.seed}:{i}")
        lab = sample_labels(rng)
        image = render(lab.char, lab.fg, lab.bg, lab.font, rng, self.size, self.shade, self.light, self.spread)
        return to_tensor(image), caption(lab.char, lab.fg, lab.bg), lab

    def __iter__(self) -> Iterator[tuple[torch.Tensor, str, Labels]]:
        return (self[i] for i in range(self.n))

    def batch(self, start: int, stop: int) -> tuple[torch.Tensor, list[str], list[Labels]]:
        """Return items `start` .. `stop - 1` stacked: (B, 3, H, W) images, captions, labels."""
        items = [self[i] for i in range(start, min(stop, self.n))]
        return torch.stack([x for x, _, _ in items]), [c for _, c, _ in items], [lab for _, _, lab in items]


def _check(char: str, fg: str, bg: str) -> None:
    if char not in CHARS:
        raise ValueError(f"unknown character {char!r}; choose one of A-Z or 0-9")
    for c in (fg, bg):
        if c not in PALETTE:
            raise ValueError(f"unknown colour {c!r}; choose one of {', '.join(COLORS)}")
    if fg == bg:
        raise ValueError(f"the glyph and the background must differ in colour, both are {fg!r}")
