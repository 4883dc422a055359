"""Checks every request passes before any view sees it.

PostgreSQL cannot store the NUL character (U+0000) in text, and no person types one: a
form posted with NUL in any field or field name is refused here with 400 and a message,
for every form of the site at once, instead of failing deep inside a service when the
database driver sees it. Query strings are left alone: the pages that read them already
treat NUL as "not found" or drop it. The JSON API checks its bodies itself
(`crowdfund.api.parsing`).
"""

from __future__ import annotations

from flask import Flask, abort, request

NUL = "\x00"
NUL_MESSAGE = "The form contained a NUL character, which no text can hold. Remove it and try again."


def refuse_nul_in_forms() -> None:
    """400 when a posted form (urlencoded or multipart) has NUL in a name or a value."""
    if request.method in ("GET", "HEAD", "OPTIONS") or request.mimetype not in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        return
    for name, value in request.form.items(multi=True):
        if NUL in name or NUL in value:
            abort(400, description=NUL_MESSAGE)


def register_input_guards(app: Flask) -> None:
    app.before_request(refuse_nul_in_forms)
