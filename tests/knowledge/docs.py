"""Documents made in the test, each with a heading, a table and the one paragraph that answers
QUESTION, among sections about other things."""

from __future__ import annotations

import io

QUESTION = "How many days do I have to return a damaged kettle?"
ANSWER = (
    "A damaged kettle can be returned within 45 days of delivery for a full refund, "
    "as long as you keep the receipt and the original box."
)
OTHER_SECTIONS = [
    (
        "Opening hours",
        "Our shop in Leeds opens at nine in the morning and closes at six in the evening "
        "from Monday to Saturday. On Sundays and bank holidays we stay closed.",
    ),
    (
        "Loyalty card",
        "Members collect one stamp for every coffee bought. Ten stamps earn a free drink "
        "of any size, and the card never expires.",
    ),
    (
        "Delivery",
        "Parcels leave our warehouse within two working days. Couriers deliver between "
        "eight and five, and a tracking link arrives by email.",
    ),
]
TABLE = [("Product", "Warranty"), ("Toaster", "2 years"), ("Blender", "3 years")]


def pdf_bytes(answer: str = ANSWER) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", "B", 18)
    pdf.cell(text="Customer handbook")
    pdf.ln(14)
    for title, text in [*OTHER_SECTIONS[:2], ("Returns", answer), OTHER_SECTIONS[2]]:
        pdf.set_font("helvetica", "B", 14)
        pdf.cell(text=title)
        pdf.ln(10)
        pdf.set_font("helvetica", size=11)
        pdf.multi_cell(0, 6, text=text)
        pdf.ln(6)
    pdf.set_font("helvetica", "B", 14)
    pdf.cell(text="Warranty")
    pdf.ln(10)
    pdf.set_font("helvetica", size=11)
    with pdf.table() as table:
        for values in TABLE:
            row = table.row()
            for value in values:
                row.cell(value)
    return bytes(pdf.output())


def docx_bytes(answer: str = ANSWER) -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Customer handbook", 1)
    for title, text in [*OTHER_SECTIONS[:2], ("Returns", answer), OTHER_SECTIONS[2]]:
        document.add_heading(title, 2)
        document.add_paragraph(text)
    document.add_heading("Warranty", 2)
    table = document.add_table(rows=len(TABLE), cols=2)
    for i, values in enumerate(TABLE):
        for j, value in enumerate(values):
            table.cell(i, j).text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def html_bytes(answer: str = ANSWER) -> bytes:
    sections = "".join(
        f"<h2>{title}</h2><p>{text}</p>"
        for title, text in [*OTHER_SECTIONS[:2], ("Returns", answer), OTHER_SECTIONS[2]]
    )
    rows = "".join(f"<tr><td>{a}</td><td>{b}</td></tr>" for a, b in TABLE)
    return (
        "<html><head><title>Customer handbook</title></head><body>"
        "<nav><a href='/'>Home</a> Returns Kettle Refund Days</nav>"
        f"<main><h1>Customer handbook</h1>{sections}<h2>Warranty</h2><table>{rows}</table></main>"
        "<footer>Copyright, kettle returns department</footer></body></html>"
    ).encode()


def markdown_bytes(sections: list[tuple[str, str]]) -> bytes:
    return "\n\n".join(f"## {title}\n\n{text}" for title, text in sections).encode()


MAKERS = {"report.pdf": pdf_bytes, "handbook.docx": docx_bytes, "help.html": html_bytes}
