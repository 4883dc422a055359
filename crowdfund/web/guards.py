"""Checks every request passes before any view sees it, and the text rule for every form.

PostgreSQL cannot store the NUL character (U+0000) in text, and no person types one: a
form posted with NUL in any field or field name is refused here with 400 and a message,
for every form of the site at once, instead of failing deep inside a service when the
database driver sees it. Query strings are left alone: the pages that read them already
treat NUL as "not found" or drop it. The JSON API checks its bodies itself
(`crowdfund.api.parsing`).

Every text field of every form (WTForms `StringField` and its kinds: text areas,
e-mail, URL, search, hidden; not passwords, which are compared as typed) gets the site's
one cleaning rule, `crowdfund.web.text.clean_text`, as its first filter: control,
bidirectional-override and invisible characters are removed (text areas keep line
breaks and tabs), and a lone surrogate or NUL is a field error. It is installed once,
in Flask-WTF's `FlaskForm.Meta.bind_field`, so that no form has to remember it.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, abort, request
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, TextAreaField
from wtforms.fields.core import UnboundField
from wtforms.meta import DefaultMeta

from crowdfund.web.text import clean_text

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


def _cleaner(multiline: bool) -> Callable[[object], object]:
    def clean(value: object) -> object:
        return clean_text(value, multiline=multiline) if isinstance(value, str) else value

    return clean


_SINGLE_LINE = _cleaner(multiline=False)
_MULTI_LINE = _cleaner(multiline=True)


def bind_field_with_cleaning(meta: DefaultMeta, form: FlaskForm, unbound_field: UnboundField, options: dict):
    """`Meta.bind_field` that puts the cleaning rule before a text field's own filters."""
    field_class = unbound_field.field_class
    if issubclass(field_class, StringField) and not issubclass(field_class, PasswordField):
        clean = _MULTI_LINE if issubclass(field_class, TextAreaField) else _SINGLE_LINE
        filters = [clean, *unbound_field.kwargs.get("filters", ())]
        return unbound_field.bind(form=form, filters=filters, **options)
    return unbound_field.bind(form=form, **options)


def install_text_cleaning() -> None:
    """Give every FlaskForm of the site the cleaning rule (idempotent)."""
    FlaskForm.Meta.bind_field = bind_field_with_cleaning


def register_input_guards(app: Flask) -> None:
    install_text_cleaning()
    app.before_request(refuse_nul_in_forms)
