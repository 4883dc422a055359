"""Small PDF documents (receipts, subscription certificates) made with fpdf2, on request.

The built-in Helvetica font covers Latin-1 only: typographic quotes and dashes are
replaced by their plain forms and any other character outside Latin-1 by "?", so a name
in another script prints as question marks rather than failing (the page versions of the
same documents show it in full).
"""

from __future__ import annotations

from collections.abc import Iterable

from fpdf import FPDF

_PLAIN = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "–": "-", "—": "-", "…": "...", "·": "-"})


def latin(text: object) -> str:
    """`text` as something Helvetica can print."""
    return str(text).translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")


def document(title: str, subtitle: str, rows: Iterable[tuple[str, str]], note: str = "") -> bytes:
    """A one-page A4 document: a title, a subtitle, label/value rows and a closing note."""
    pdf = FPDF(format="A4")
    pdf.set_title(latin(title))
    pdf.set_creator("HealthFund")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 20)
    pdf.cell(0, 12, latin(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    pdf.multi_cell(0, 6, latin(subtitle), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for label, value in rows:
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(55, 7, latin(label))
        pdf.set_font("Helvetica", "", 10)
        pdf.multi_cell(0, 7, latin(value), new_x="LMARGIN", new_y="NEXT")
    if note:
        pdf.ln(6)
        pdf.set_font("Helvetica", "I", 9)
        pdf.multi_cell(0, 5, latin(note), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
