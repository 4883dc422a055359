"""Cover images: checked by content, re-encoded, stored under a random name.

An upload is trusted for nothing: its name and declared type are ignored, a file that
carries web page markup (an HTML/SVG polyglot: a real image header with a page after it)
is refused, Pillow decides what it is (JPEG, PNG or WebP only), images that would decode
to too many pixels are refused before decoding, and what we keep is a fresh JPEG (no
EXIF, no metadata, no trailing bytes) cropped to 16:9 and at most 1600×900, under
UPLOAD_DIR/covers/<32 hex>.jpg.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import tempfile
import warnings
from pathlib import Path

from flask import current_app
from PIL import Image, ImageOps, UnidentifiedImageError
from werkzeug.datastructures import FileStorage

from crowdfund.errors import ErrorCode, ValidationError

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
COVER_SIZE = (1600, 900)
MIN_COVER_SIZE = (320, 180)
#: Refuse images with more pixels than this before decoding them (about 40 megapixels).
MAX_COVER_PIXELS = 40_000_000
JPEG_QUALITY = 85
_NAME = re.compile(r"[0-9a-f]{32}\.jpg")
#: Tags that make a file a web page as well as an image; image metadata (XMP) has none of them.
_MARKUP = re.compile(
    rb"<(?:!doctype|html|head|body|script|iframe|object|embed|svg|\?xml-stylesheet)[\s>/]", re.I
)


def random_token() -> str:
    """32 random hex digits."""
    return secrets.token_hex(16)


def max_cover_bytes() -> int:
    """The largest upload accepted: COVER_MAX_BYTES, never more than MAX_CONTENT_LENGTH."""
    limit = current_app.config.get("COVER_MAX_BYTES") or current_app.config.get("MAX_CONTENT_LENGTH")
    cap = current_app.config.get("MAX_CONTENT_LENGTH")
    return min(limit, cap) if cap else limit


def read_upload(upload: FileStorage | None) -> bytes:
    """The uploaded file's bytes, refusing an empty or too large file without reading it all."""
    if upload is None or not upload.filename:
        raise ValidationError("Choose an image file to upload.", code=ErrorCode.IMAGE_MISSING, field="image")
    limit = max_cover_bytes()
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise ValidationError(
            f"The image is too large: at most {limit // (1024 * 1024) or 1} MB.",
            code=ErrorCode.IMAGE_TOO_LARGE,
            field="image",
        )
    if not data:
        raise ValidationError("That file is empty.", code=ErrorCode.IMAGE_EMPTY, field="image")
    return data


def _not_an_image() -> ValidationError:
    return ValidationError(
        "That file is not a JPEG, PNG or WebP image. Please upload a photo or picture in one of those formats.",
        code=ErrorCode.IMAGE_INVALID,
        field="image",
    )


def _too_many_pixels() -> ValidationError:
    return ValidationError(
        f"That image has too many pixels; please upload one of at most {MAX_COVER_PIXELS // 1_000_000} megapixels.",
        code=ErrorCode.IMAGE_TOO_MANY_PIXELS,
        field="image",
    )


def prepare_cover(data: bytes) -> bytes:
    """Check `data` is a real JPEG/PNG/WebP image and return it as a clean 16:9 JPEG."""
    limit = max_cover_bytes()
    if len(data) > limit:
        raise ValidationError(
            f"The image is too large: at most {limit // (1024 * 1024) or 1} MB.",
            code=ErrorCode.IMAGE_TOO_LARGE,
            field="image",
        )
    if _MARKUP.search(data):
        raise ValidationError(
            "That file contains web page code (HTML, SVG or script). Upload a plain JPEG, PNG or WebP photo.",
            code=ErrorCode.IMAGE_HAS_MARKUP,
            field="image",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                if probe.format not in ALLOWED_FORMATS:
                    raise _not_an_image()
                width, height = probe.size
                if width * height > min(MAX_COVER_PIXELS, Image.MAX_IMAGE_PIXELS or MAX_COVER_PIXELS):
                    raise _too_many_pixels()
                probe.verify()
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
                img = _to_rgb(img)
        except ValidationError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_many_pixels() from None
        except (
            UnidentifiedImageError,
            OSError,
            SyntaxError,
            ValueError,
            EOFError,
        ):
            raise _not_an_image() from None

    if img.width < MIN_COVER_SIZE[0] or img.height < MIN_COVER_SIZE[1]:
        raise ValidationError(
            f"The image is too small: at least {MIN_COVER_SIZE[0]}×{MIN_COVER_SIZE[1]} pixels, "
            f"ideally {COVER_SIZE[0]}×{COVER_SIZE[1]}.",
            code=ErrorCode.IMAGE_TOO_SMALL,
            field="image",
        )
    img = _cover_crop(img)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
    return out.getvalue()


def _to_rgb(img: Image.Image) -> Image.Image:
    """Flatten transparency onto white and convert to RGB."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def _cover_crop(img: Image.Image) -> Image.Image:
    """Centre-crop to 16:9 and shrink to at most 1600×900 (never enlarge)."""
    target_w, target_h = COVER_SIZE
    width, height = img.size
    # The widest 16:9 box that fits: full height if the image is too wide, else full width.
    crop_w = height * target_w // target_h if width * target_h > height * target_w else width
    out_w = min(crop_w, target_w)
    out_h = out_w * target_h // target_w
    return ImageOps.fit(img, (out_w, out_h), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def covers_dir() -> Path:
    return Path(current_app.config["UPLOAD_DIR"]) / "covers"


def store_cover(jpeg: bytes) -> str:
    """Write a prepared cover under a new random name and return the name."""
    folder = covers_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{random_token()}.jpg"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(jpeg)
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return name


def cover_path(name: str | None) -> Path | None:
    """The file of a stored cover, or None for anything that is not one (bad name, missing)."""
    if not name or not _NAME.fullmatch(name):
        return None
    path = covers_dir() / name
    return path if path.is_file() else None


def delete_cover(name: str | None) -> None:
    """Remove a stored cover file; names that are not ours are ignored."""
    path = cover_path(name)
    if path is not None:
        path.unlink(missing_ok=True)
