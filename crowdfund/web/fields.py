"""Form fields shared by every package's forms.

`WholeNumberField` is WTForms' IntegerField made safe for anything a visitor types: it
takes an optional sign and at most ten ASCII digits. WTForms' own field passes the text
to Python's `int`, which also accepts "١٢" (Arabic-Indic digits) and "1_000", and turns a
400-digit number into an int that `NumberRange` then fails to compare (OverflowError)
and that no database column can hold.
"""

from __future__ import annotations

import re

from wtforms import IntegerField

_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,10}")


class WholeNumberField(IntegerField):
    """An integer typed in ASCII digits, at most ten of them; anything else is a field error."""

    def process_formdata(self, valuelist: list) -> None:
        if not valuelist:
            return
        text = str(valuelist[0]).strip()
        if not _WHOLE_NUMBER.fullmatch(text):
            self.data = None
            raise ValueError(self.gettext("Enter a whole number, like 12."))
        self.data = int(text)
