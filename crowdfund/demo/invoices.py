"""A hospital's itemised invoice as a small PDF (fpdf2), made in memory for the demo's tranches.

The demo uploads it exactly as a campaigner would upload the hospital's invoice: patient
aid checks it by content and keeps it outside static/, for the appeal's members and
operators only.
"""

from __future__ import annotations

from fpdf import FPDF

from crowdfund.money import Money


def _latin(text: str) -> str:
    """The core PDF fonts are Latin-1: anything else becomes '?'."""
    return text.encode("latin-1", "replace").decode("latin-1")


def invoice_pdf(
    *,
    hospital: str,
    city: str,
    number: str,
    patient: str,
    issued: str,
    items: list[tuple[str, Money]],
) -> bytes:
    """One page: the hospital, the invoice's number and date, the patient, each line and the total."""
    pdf = FPDF(format="A4")
    pdf.set_creator("HealthFund demo")
    pdf.add_page()
    pdf.set_font("helvetica", "B", 15)
    pdf.cell(0, 9, _latin(hospital), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 10)
    pdf.cell(0, 6, _latin(f"{city} - Department of Haematology"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.set_font("helvetica", "B", 12)
    pdf.cell(0, 8, _latin(f"Invoice {number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 10)
    pdf.cell(0, 6, _latin(f"Date: {issued}    Patient: {patient}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for description, amount in items:
        pdf.cell(140, 7, _latin(description), border="B")
        pdf.cell(0, 7, amount.format(with_code=True), border="B", align="R", new_x="LMARGIN", new_y="NEXT")
    total = Money(sum(a.amount for _, a in items), items[0][1].currency)
    pdf.set_font("helvetica", "B", 10)
    pdf.cell(140, 8, "Total")
    pdf.cell(0, 8, total.format(with_code=True), align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
