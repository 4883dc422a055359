"""Cover pictures drawn with Pillow for the demo data: a diagonal gradient in the health
category's colours, a few soft circles and a white symbol of the category.

They let the demo site look real offline; uploaded covers go through
`crowdfund.campaigns.images` instead.
"""

from __future__ import annotations

import io
import random
from functools import lru_cache

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from crowdfund.campaigns.models import HealthCategory

SIZE = (1600, 900)

#: (start colour, end colour) of each category's gradient.
PALETTES: dict[HealthCategory, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    HealthCategory.MEDICAL_DEVICES: ((13, 71, 161), (66, 165, 245)),
    HealthCategory.PHARMA_BIOTECH: ((74, 20, 140), (186, 104, 200)),
    HealthCategory.DIGITAL_HEALTH: ((0, 96, 100), (38, 198, 218)),
    HealthCategory.CLINICS_CARE: ((27, 94, 32), (102, 187, 106)),
    HealthCategory.RESEARCH: ((191, 54, 12), (255, 183, 77)),
    HealthCategory.PATIENT_AID: ((173, 20, 87), (244, 143, 177)),
}


def _tint(colour: tuple[int, int, int], shift: int) -> tuple[int, int, int]:
    """`colour` lightened (shift > 0) or darkened, each channel kept in 0..255."""
    return tuple(min(255, max(0, channel + shift)) for channel in colour)  # type: ignore[return-value]


def _gradient(start: tuple[int, int, int], end: tuple[int, int, int]) -> Image.Image:
    """A top-left to bottom-right gradient from `start` to `end`."""
    vertical = Image.linear_gradient("L").resize(SIZE)
    horizontal = Image.linear_gradient("L").rotate(90).transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize(SIZE)
    mask = ImageChops.add(vertical, horizontal, scale=2)
    return Image.composite(Image.new("RGB", SIZE, end), Image.new("RGB", SIZE, start), mask)


def _glyph(draw: ImageDraw.ImageDraw, category: HealthCategory, cx: int, cy: int, r: int) -> None:
    """The category's symbol, white, centred on (cx, cy), about 2r wide."""
    white = (255, 255, 255, 235)
    w = max(r // 7, 8)
    if category is HealthCategory.MEDICAL_DEVICES:  # a heartbeat trace
        pts = [(-1.6, 0), (-0.7, 0), (-0.45, -0.7), (-0.1, 0.9), (0.2, -0.4), (0.4, 0), (1.6, 0)]
        draw.line([(cx + x * r, cy + y * r) for x, y in pts], fill=white, width=w, joint="curve")
    elif category is HealthCategory.PHARMA_BIOTECH:  # a capsule
        draw.rounded_rectangle(
            (cx - r, cy - r * 0.42, cx + r, cy + r * 0.42), radius=int(r * 0.42), outline=white, width=w
        )
        draw.line((cx, cy - r * 0.42, cx, cy + r * 0.42), fill=white, width=w)
    elif category is HealthCategory.DIGITAL_HEALTH:  # a phone with a pulse
        draw.rounded_rectangle(
            (cx - r * 0.55, cy - r, cx + r * 0.55, cy + r), radius=int(r * 0.15), outline=white, width=w
        )
        pts = [(-0.4, 0), (-0.15, 0), (-0.05, -0.3), (0.08, 0.3), (0.18, 0), (0.4, 0)]
        draw.line([(cx + x * r, cy + y * r) for x, y in pts], fill=white, width=max(w // 2, 4), joint="curve")
    elif category is HealthCategory.CLINICS_CARE:  # a cross
        a, b = r * 0.33, r
        draw.polygon(
            [(cx - a, cy - b), (cx + a, cy - b), (cx + a, cy - a), (cx + b, cy - a), (cx + b, cy + a), (cx + a, cy + a),
             (cx + a, cy + b), (cx - a, cy + b), (cx - a, cy + a), (cx - b, cy + a), (cx - b, cy - a), (cx - a, cy - a)],
            fill=white,
        )  # fmt: skip
    elif category is HealthCategory.RESEARCH:  # a flask
        draw.line((cx - r * 0.2, cy - r, cx - r * 0.2, cy - r * 0.2), fill=white, width=w)
        draw.line((cx + r * 0.2, cy - r, cx + r * 0.2, cy - r * 0.2), fill=white, width=w)
        draw.line((cx - r * 0.35, cy - r, cx + r * 0.35, cy - r), fill=white, width=w)
        draw.polygon(
            [
                (cx - r * 0.2, cy - r * 0.2),
                (cx + r * 0.2, cy - r * 0.2),
                (cx + r * 0.8, cy + r),
                (cx - r * 0.8, cy + r),
            ],
            fill=white,
        )
    else:  # a heart
        draw.ellipse((cx - r, cy - r * 0.8, cx + r * 0.06, cy + r * 0.26), fill=white)
        draw.ellipse((cx - r * 0.06, cy - r * 0.8, cx + r, cy + r * 0.26), fill=white)
        draw.polygon(
            [(cx - r * 0.97, cy - r * 0.15), (cx + r * 0.97, cy - r * 0.15), (cx, cy + r)], fill=white
        )


@lru_cache(maxsize=32)
def draw_cover(category: HealthCategory, seed: str) -> bytes:
    """A 1600×900 JPEG for a campaign of `category`; the same `seed` gives the same picture."""
    rng = random.Random(seed)
    start, end = (_tint(colour, rng.randint(-28, 28)) for colour in PALETTES[category])
    if rng.random() < 0.5:
        start, end = end, start
    image = _gradient(start, end).convert("RGBA")

    blobs = Image.new("RGBA", SIZE, (0, 0, 0, 0))
    blob_draw = ImageDraw.Draw(blobs)
    for _ in range(6):
        radius = rng.randint(120, 420)
        x, y = rng.randint(-100, SIZE[0] + 100), rng.randint(-100, SIZE[1] + 100)
        blob_draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius), fill=(255, 255, 255, rng.randint(18, 45))
        )
    # Blurring a quarter-size copy and scaling it back is as soft and much faster.
    small = blobs.resize((SIZE[0] // 4, SIZE[1] // 4)).filter(ImageFilter.GaussianBlur(8))
    image = Image.alpha_composite(image, small.resize(SIZE, Image.Resampling.BILINEAR))

    symbol = Image.new("RGBA", SIZE, (0, 0, 0, 0))
    cx = rng.choice((int(SIZE[0] * 0.28), int(SIZE[0] * 0.5), int(SIZE[0] * 0.72)))
    cy = SIZE[1] // 2 + rng.randint(-60, 60)
    ring_r = rng.randint(260, 330)
    ring = Image.new("RGBA", SIZE, (0, 0, 0, 0))
    ImageDraw.Draw(ring).ellipse(
        (cx - ring_r, cy - ring_r, cx + ring_r, cy + ring_r), fill=(255, 255, 255, 40)
    )
    image = Image.alpha_composite(image, ring)
    _glyph(ImageDraw.Draw(symbol), category, cx, cy, int(ring_r * 0.62))
    image = Image.alpha_composite(image, symbol)

    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=85, optimize=True, progressive=True)
    return out.getvalue()
