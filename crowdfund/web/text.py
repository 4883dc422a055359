"""The one cleaning rule for text a person sends us, in forms and in the JSON API alike.

Refused (the field gets an error, nothing is stored):
- NUL (U+0000): PostgreSQL cannot store it in text;
- lone surrogates (U+D800–U+DFFF): valid JSON escapes (`"\\ud800"`) but not text; UTF-8
  cannot encode them, so the database driver would fail on them.

Removed without a word, because no person means to type them and they can make a
name or a title read differently from what it is:
- C0 and C1 control characters and DEL (`\\x01`, the `\\x1b` of terminal escapes, …);
  line breaks and tabs are kept in multi-line fields (`\\r\\n` becomes `\\n`) and become
  a space in single-line ones;
- bidirectional overrides, embeddings and isolates (U+202A–U+202E, U+2066–U+2069),
  which reorder what is shown ("Trojan Source");
- invisible characters (zero-width space U+200B, word joiner U+2060, BOM U+FEFF,
  Mongolian vowel separator U+180E), and zero-width (non-)joiners U+200C/U+200D except
  between two non-ASCII characters, where emoji sequences and several scripts need them.

`clean_text` is the rule; `crowdfund.web.guards` installs it as a filter on every
WTForms text field of the site, and `crowdfund.api.parsing.text` applies it to every
string field of an API body.
"""

from __future__ import annotations

import re

#: Why a text is refused: a sentence that says what to do.
NUL_MESSAGE = "This contains a NUL character, which no text can hold. Remove it and try again."
SURROGATE_MESSAGE = (
    "This contains an unpaired UTF-16 surrogate (such as \\ud800), which is not a character. "
    "Send the text as valid Unicode."
)

_SURROGATE = re.compile("[\ud800-\udfff]")
#: Controls other than tab and line breaks, DEL, C1 controls; bidi controls; invisibles.
_ALWAYS_REMOVED = re.compile(
    "[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200b\u2060\ufeff\u180e]"
)
#: Zero-width (non-)joiners next to ASCII or at either end: nothing there needs them.
_STRAY_JOINER = re.compile("(?<![^\x00-\x7f])[\u200c\u200d]|[\u200c\u200d](?![^\x00-\x7f])")
_LINE_BREAK = re.compile("\r\n?")
_SINGLE_LINE_SPACE = re.compile("[\t\n\r]")


class UnsafeText(ValueError):
    """Text that cannot be stored at all; `str(exc)` says why and what to do."""


def clean_text(value: str, *, multiline: bool = False) -> str:
    """`value` under the cleaning rule, or UnsafeText for NUL or a lone surrogate."""
    if "\x00" in value:
        raise UnsafeText(NUL_MESSAGE)
    if _SURROGATE.search(value):
        raise UnsafeText(SURROGATE_MESSAGE)
    value = _LINE_BREAK.sub("\n", value)
    if not multiline:
        value = _SINGLE_LINE_SPACE.sub(" ", value)
    value = _ALWAYS_REMOVED.sub("", value)
    return _STRAY_JOINER.sub("", value)


def has_surrogate(value: str) -> bool:
    """True when `value` holds a lone surrogate (it cannot be encoded as UTF-8)."""
    return _SURROGATE.search(value) is not None
