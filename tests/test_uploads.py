"""Cover uploads from a hostile campaigner: refused with a message, never stored, never HTML.

Each upload goes through the real page (/studio/<id>/cover) with CSRF protection on. A
refused file leaves no file in the upload folder and no change to the campaign; an
accepted one is stored only as a fresh JPEG and served as image/jpeg with nosniff.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from flask import current_app

from crowdfund.campaigns.models import Campaign, CampaignKind
from crowdfund.extensions import db
from tests.factories.accounts import campaigner
from tests.factories.campaigns import image_bytes, ready_draft
from tests.robustness_world import csrf_client

HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming `width`×`height` (1-bit greyscale)."""
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))


def huge_png() -> bytes:
    """A tiny file that claims 65535×65535 pixels (a decompression bomb's header)."""
    return png_header(65_535, 65_535) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")


SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="800" height="450">'
    b"<script>alert(document.domain)</script><rect width='800' height='450'/></svg>"
)

REFUSED = {
    "polyglot: a whole PNG, then a web page": (image_bytes((800, 450)) + HTML, "web page code"),
    "polyglot: a PNG header, then a web page": (png_header(800, 450) + HTML, "web page code"),
    "polyglot: a web page inside a PNG text chunk": (
        image_bytes((800, 450))[:-12] + _chunk(b"tEXt", b"Comment\x00" + HTML) + _chunk(b"IEND", b""),
        "web page code",
    ),
    "SVG": (SVG, "web page code"),
    "SVG without a script": (b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', "web page code"),
    "huge dimensions": (huge_png(), "too many pixels"),
    "zero bytes": (b"", "That file is empty"),
    "a PNG header and nothing else": (png_header(800, 450), "not a JPEG, PNG or WebP"),
}


def _covers(folder: Path) -> list[str]:
    covers = folder / "covers"
    return sorted(p.name for p in covers.iterdir()) if covers.exists() else []


@pytest.fixture
def csrf_app(app_config, request):
    app_config.WTF_CSRF_ENABLED = True
    return request.getfixturevalue("app")


@pytest.mark.parametrize(
    "filename, content_type",
    [("cover.png", "image/png"), ("cover.html", "text/html"), ("cover.svg", "image/svg+xml")],
)
@pytest.mark.parametrize("case", list(REFUSED))
def test_hostile_covers_are_refused_and_never_stored(csrf_app, case, filename, content_type):
    data, message = REFUSED[case]
    user, org = campaigner()
    draft = ready_draft(CampaignKind.REWARD, user, org)
    client, token = csrf_client(csrf_app, user)
    upload_dir = Path(current_app.config["UPLOAD_DIR"])
    before = _covers(upload_dir)

    response = client.post(
        f"/studio/{draft.id}/cover",
        data={"csrf_token": token, "image": (io.BytesIO(data), filename, content_type)},
        content_type="multipart/form-data",
    )

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page
    assert response.mimetype == "text/html"  # our page, with the message; the upload is not echoed
    assert "alert(document" not in page
    assert _covers(upload_dir) == before
    db.session.expire_all()
    assert db.session.get(Campaign, draft.id).cover_image is None
    assert client.get(f"/studio/{draft.id}/cover.jpg").status_code == 404


def test_a_real_image_named_html_is_stored_and_served_only_as_a_jpeg(csrf_app):
    """The declared name and type do not matter: a real picture is re-encoded as JPEG."""
    user, org = campaigner()
    draft = ready_draft(CampaignKind.REWARD, user, org)
    client, token = csrf_client(csrf_app, user)
    upload_dir = Path(current_app.config["UPLOAD_DIR"])

    response = client.post(
        f"/studio/{draft.id}/cover",
        data={"csrf_token": token, "image": (io.BytesIO(image_bytes((800, 450))), "page.html", "text/html")},
        content_type="multipart/form-data",
    )

    assert response.status_code == 302
    (name,) = _covers(upload_dir)
    db.session.expire_all()
    assert db.session.get(Campaign, draft.id).cover_image == name
    assert name.endswith(".jpg") and len(name) == 36
    stored = (upload_dir / "covers" / name).read_bytes()
    assert stored.startswith(b"\xff\xd8\xff") and b"<" not in stored[:2] and b"html" not in stored.lower()
    for url in (f"/studio/{draft.id}/cover.jpg", f"/media/covers/{name}"):
        served = client.get(url)
        assert served.status_code == 200, url
        assert served.mimetype == "image/jpeg", url
        assert served.headers["X-Content-Type-Options"] == "nosniff", url
        assert served.data == stored, url
