"""Invoice files: checked by content, stored outside static/ under a random name.

An upload is trusted for nothing: its name and declared type are ignored. A PDF must
start with ``%PDF-`` and end with ``%%EOF``; anything else must be an image Pillow reads
as JPEG, PNG or WebP, and is kept re-encoded (PNG), so no metadata (names, dates of
birth in EXIF) and no trailing bytes survive. A file that carries web page markup is
refused either way. Files live under UPLOAD_DIR/invoices/<32 hex>.<pdf|png> and are only
ever served as an attachment.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from PIL import Image, ImageOps, UnidentifiedImageError
from werkzeug.datastructures import FileStorage

from crowdfund.errors import ErrorCode, ValidationError

IMAGE_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
MAX_PIXELS = 40_000_000
PDF = "application/pdf"
PNG = "image/png"
_NAME = re.compile(r"[0-9a-f]{32}\.(?:pdf|png)")
_MARKUP = re.compile(rb"<(?:!doctype|html|head|body|script|iframe|object|embed|svg)[\s>/]", re.I)


@dataclass(frozen=True)
class CheckedInvoice:
    """An invoice file that passed the checks: the bytes to keep and their type."""

    data: bytes
    content_type: str

    @property
    def extension(self) -> str:
        return "pdf" if self.content_type == PDF else "png"


def max_invoice_bytes() -> int:
    limit = int(current_app.config["PATIENT_AID_INVOICE_MAX_BYTES"])
    cap = current_app.config.get("MAX_CONTENT_LENGTH")
    return min(limit, cap) if cap else limit


def _refused(message: str, code: ErrorCode = ErrorCode.INVOICE_FILE_INVALID) -> ValidationError:
    return ValidationError(message, code=code, field="invoice_file")


def read_upload(upload: FileStorage | None) -> bytes:
    """The uploaded file's bytes, refusing a missing, empty or too large file."""
    if upload is None or not upload.filename:
        raise _refused("Attach the hospital's invoice (PDF or photo).", ErrorCode.INVOICE_FILE_MISSING)
    limit = max_invoice_bytes()
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise _refused(
            f"The invoice file is too large: at most {limit // (1024 * 1024) or 1} MB.",
            ErrorCode.INVOICE_FILE_TOO_LARGE,
        )
    if not data:
        raise _refused("That file is empty.", ErrorCode.INVOICE_FILE_MISSING)
    return data


def check_invoice(data: bytes) -> CheckedInvoice:
    """`data` as a PDF (kept as is) or an image (re-encoded as PNG); ValidationError otherwise."""
    if not data:
        raise _refused("Attach the hospital's invoice (PDF or photo).", ErrorCode.INVOICE_FILE_MISSING)
    if len(data) > max_invoice_bytes():
        raise _refused("The invoice file is too large.", ErrorCode.INVOICE_FILE_TOO_LARGE)
    if _MARKUP.search(data):
        raise _refused("That file contains web page code. Upload the invoice as a PDF or a photo.")
    if data.startswith(b"%PDF-"):
        if b"%%EOF" not in data[-1024:]:
            raise _refused("That PDF is incomplete or damaged. Upload the invoice again.")
        return CheckedInvoice(data, PDF)
    return CheckedInvoice(_clean_image(data), PNG)


def _clean_image(data: bytes) -> bytes:
    not_invoice = _refused("That file is neither a PDF nor a JPEG, PNG or WebP photo of the invoice.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                if probe.format not in IMAGE_FORMATS:
                    raise not_invoice
                if probe.size[0] * probe.size[1] > MAX_PIXELS:
                    raise _refused("That photo has too many pixels.")
                probe.verify()
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                img = ImageOps.exif_transpose(img).convert("RGB")
        except ValidationError:
            raise
        except (
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
            UnidentifiedImageError,
            OSError,
            SyntaxError,
            ValueError,
            EOFError,
        ):
            raise not_invoice from None
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def invoices_dir() -> Path:
    return Path(current_app.config["UPLOAD_DIR"]) / "invoices"


def store_invoice(invoice: CheckedInvoice) -> str:
    """Write a checked invoice under a new random name and return the name."""
    folder = invoices_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{secrets.token_hex(16)}.{invoice.extension}"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(invoice.data)
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return name


def invoice_path(name: str | None) -> Path | None:
    """The stored file of an invoice, or None for anything that is not one."""
    if not name or not _NAME.fullmatch(name):
        return None
    path = invoices_dir() / name
    return path if path.is_file() else None


def delete_invoice(name: str | None) -> None:
    path = invoice_path(name)
    if path is not None:
        path.unlink(missing_ok=True)
