//! Invoice and credit-note PDFs, rendered in-process with printpdf: seller and buyer, number,
//! dates and period, the lines (description, quantity, unit price, tax, amount), the tax
//! summary, totals, amount due and payment status. Long documents break across A4 pages with
//! the table header repeated and "Page i of n" on every page.
//!
//! Rendering is deterministic: the same document gives the same bytes (fixed font resource
//! names, fixed dates, and a trailer id derived from the content instead of printpdf's random
//! one), so a stored PDF can be checked against a re-render of its invoice.

mod canvas;
mod sample;
mod text;

use chrono::{DateTime, Utc};
use pricing::{Currency, Decimal};
use printpdf::{Mm, PdfDocument, PdfPage, PdfSaveOptions};
use sha2::{Digest, Sha256};

pub use canvas::{BadFont, Fonts};
pub use sample::sample_invoice;

use crate::domain::lifecycle::Kind;
use crate::domain::parties::{Party, SummarySnapshot};
use crate::domain::tax::TaxedLine;
use canvas::{Canvas, Face};
use text::{date, money, percent, quantity, unit_price};

/// One line as printed.
#[derive(Debug, Clone)]
pub struct SheetLine<'a> {
    pub description: &'a str,
    pub quantity: Decimal,
    pub unit_amount: Option<Decimal>,
    pub net: i64,
    pub tax: i64,
}

/// Everything a document prints.
#[derive(Debug, Clone)]
pub struct Sheet<'a> {
    pub kind: Kind,
    pub number: &'a str,
    pub issued_at: DateTime<Utc>,
    pub due_at: Option<DateTime<Utc>>,
    pub period_start: DateTime<Utc>,
    pub period_end: Option<DateTime<Utc>>,
    /// The number of the invoice a supplementary invoice or credit note refers to.
    pub follows: Option<&'a str>,
    pub seller: &'a Party,
    pub buyer: &'a Party,
    pub currency: Currency,
    pub lines: Vec<SheetLine<'a>>,
    pub summary: &'a [SummarySnapshot],
    pub totals: TaxedLine,
    pub amount_due: i64,
    /// Paid when it was issued (nothing to pay).
    pub paid: bool,
    pub notice: Option<&'a str>,
}

/// A rendered document.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    /// Lower-case hex SHA-256 of `bytes`.
    pub sha256: String,
    pub pages: usize,
}

// Layout, in millimetres from the bottom-left corner of an A4 page.
const WIDTH: f32 = 210.0;
const HEIGHT: f32 = 297.0;
const LEFT: f32 = 18.0;
const RIGHT: f32 = 192.0;
const ROW: f32 = 5.5;
/// No table row below this (the footer lives under it).
const BOTTOM: f32 = 28.0;
/// Where the table header sits on the first page and on the others.
const FIRST_TABLE: f32 = 196.0;
const NEXT_TABLE: f32 = 268.0;
// Right edges of the number columns; the description runs up to `DESCRIPTION_END`.
const QTY_END: f32 = 118.0;
const UNIT_END: f32 = 146.0;
const TAX_END: f32 = 166.0;
const DESCRIPTION_END: f32 = 98.0;
const BODY: f32 = 9.0;

/// The rows that fit under a table header at `top`.
fn capacity(top: f32) -> usize {
    ((top - ROW - BOTTOM) / ROW).floor() as usize + 1
}

/// Rows per page for `rows` lines under a first table header at `first_top`, then whether
/// the closing block (of `closing` rows) needs a page of its own.
fn paginate(rows: usize, closing: usize, first_top: f32) -> (Vec<usize>, bool) {
    let mut pages = Vec::new();
    let mut left = rows;
    let mut cap = capacity(first_top);
    loop {
        let here = left.min(cap);
        pages.push(here);
        left -= here;
        if left == 0 {
            // The closing block goes under the last row if it fits.
            let used = here;
            return (pages, used + closing > cap);
        }
        cap = capacity(NEXT_TABLE);
    }
}

/// Renders `sheet` with `fonts`.
pub fn render(fonts: &Fonts, sheet: &Sheet<'_>) -> Rendered {
    let closing = closing_rows(sheet, fonts);
    // The header's height decides the first page's room: measure it on a scratch canvas.
    let first_top = header(&mut Canvas::new(fonts), sheet);
    let (pages, own_page) = paginate(sheet.lines.len(), closing, first_top);
    let total = pages.len() + usize::from(own_page);
    let mut out = Vec::with_capacity(total);
    let (mut regular, mut bold) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    let mut page = |c: Canvas<'_>, out: &mut Vec<PdfPage>| {
        regular.extend(c.regular_chars);
        bold.extend(c.bold_chars);
        out.push(PdfPage::new(Mm(WIDTH), Mm(HEIGHT), c.ops));
    };
    let mut next_line = 0;
    for (i, &rows) in pages.iter().enumerate() {
        let mut c = Canvas::new(fonts);
        let top = if i == 0 {
            header(&mut c, sheet)
        } else {
            NEXT_TABLE
        };
        table_header(&mut c, top);
        let mut y = top - ROW - 1.5;
        for line in &sheet.lines[next_line..next_line + rows] {
            row(&mut c, y, line, sheet.currency);
            y -= ROW;
        }
        next_line += rows;
        if i + 1 == pages.len() && !own_page {
            closing_block(&mut c, y - 2.0, sheet);
        }
        footer(&mut c, sheet, i + 1, total);
        page(c, &mut out);
    }
    if own_page {
        let mut c = Canvas::new(fonts);
        closing_block(&mut c, NEXT_TABLE, sheet);
        footer(&mut c, sheet, total, total);
        page(c, &mut out);
    }
    let (regular, bold) = fonts.subsets(&regular, &bold);
    let mut doc = PdfDocument::new(sheet.number);
    doc.metadata.info.author = sheet.seller.name.clone();
    doc.metadata.info.creator = "saas-platform invoicing".into();
    doc.metadata.info.producer = "saas-platform invoicing".into();
    doc.metadata.info.subject = format!("{} {}", title(sheet.kind), sheet.number);
    doc.resources
        .fonts
        .map
        .insert(canvas::regular_id(), printpdf::PdfFont::new(regular));
    doc.resources
        .fonts
        .map
        .insert(canvas::bold_id(), printpdf::PdfFont::new(bold));
    doc.with_pages(out);
    let bytes = fixed_id(doc.save(&PdfSaveOptions::default(), &mut Vec::new()));
    let sha256 = sha256_hex(&bytes);
    Rendered {
        bytes,
        sha256,
        pages: total,
    }
}

fn title(kind: Kind) -> &'static str {
    match kind {
        Kind::Invoice => "Invoice",
        Kind::CreditNote => "Credit note",
    }
}

/// Lower-case hex SHA-256 of `bytes` (what an invoice records of its PDF).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// printpdf writes a random trailer `/ID`; replace both strings with ones derived from the
/// rest of the document (same length, so the cross-reference offsets stay right).
fn fixed_id(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(at) = find(&bytes, b"/ID[(").or_else(|| find(&bytes, b"/ID [(")) else {
        return bytes;
    };
    let start = at + bytes[at..].iter().position(|&b| b == b'(').unwrap_or(0);
    let digest = Sha256::digest(&bytes[..at]);
    let mut i = start;
    let mut n = 0;
    while i < bytes.len() && bytes[i] != b']' {
        if bytes[i] == b'(' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b')' {
                // Letters A–P from the digest's nibbles: printable, no escaping needed.
                let nibble = (digest[n % 32] >> (4 * (n % 2))) & 0x0f;
                bytes[j] = b'A' + nibble;
                n += 1;
                j += 1;
            }
            i = j;
        }
        i += 1;
    }
    bytes
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// A party's block from `y` down, every line wrapped to the block's width (a legal name is
/// never cut); returns the y under it.
fn party(c: &mut Canvas<'_>, x: f32, mut y: f32, p: &Party) -> f32 {
    const BLOCK: f32 = 88.0;
    for line in c.wrap(&p.name, BLOCK, 10.5, Face::Bold) {
        c.text(x, y, 10.5, Face::Bold, &line);
        y -= 4.8;
    }
    y -= 0.4;
    let region = p.region.as_deref().unwrap_or("");
    let place = [region, p.country.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let tax_id = p.tax_id.as_ref().map(|t| format!("VAT / tax id: {t}"));
    for l in p
        .address_lines
        .iter()
        .map(String::as_str)
        .chain([place.as_str()])
        .chain(tax_id.as_deref())
        .chain(p.email.as_deref())
    {
        for line in c.wrap(l, BLOCK, BODY, Face::Regular) {
            c.text(x, y, BODY, Face::Regular, &line);
            y -= 4.3;
        }
    }
    y
}

/// The first page's top: seller, document title and facts, buyer; returns where the table
/// header goes (lower than usual when the parties' blocks are long).
fn header(c: &mut Canvas<'_>, s: &Sheet<'_>) -> f32 {
    let seller_end = party(c, LEFT, 277.0, s.seller);
    c.text_right(RIGHT, 276.0, 20.0, Face::Bold, title(s.kind));
    let mut facts = vec![
        ("Number", s.number.to_string()),
        ("Issued", date(s.issued_at)),
    ];
    if let Some(due) = s.due_at.filter(|_| s.kind == Kind::Invoice) {
        facts.push(("Due", date(due)));
    }
    let period = match s.period_end {
        Some(end) => format!("{} – {}", date(s.period_start), date(end)),
        None => format!("from {}", date(s.period_start)),
    };
    facts.push(("Period", period));
    if let Some(original) = s.follows {
        let label = match s.kind {
            Kind::CreditNote => "Credits",
            Kind::Invoice => "Supplements",
        };
        facts.push((label, original.to_string()));
    }
    let mut y = 266.0;
    for (label, value) in facts {
        c.text(130.0, y, BODY, Face::Regular, label);
        c.text_right(RIGHT, y, BODY, Face::Bold, &value);
        y -= 4.8;
    }
    let bill_to = seller_end.min(y).min(244.0) - 6.0;
    c.text(LEFT, bill_to, 8.0, Face::Bold, "BILL TO");
    let buyer_end = party(c, LEFT, bill_to - 5.5, s.buyer);
    (buyer_end - 8.0).min(FIRST_TABLE)
}

fn table_header(c: &mut Canvas<'_>, top: f32) {
    c.text(LEFT, top, BODY, Face::Bold, "Description");
    c.text_right(QTY_END, top, BODY, Face::Bold, "Qty");
    c.text_right(UNIT_END, top, BODY, Face::Bold, "Unit price");
    c.text_right(TAX_END, top, BODY, Face::Bold, "Tax");
    c.text_right(RIGHT, top, BODY, Face::Bold, "Amount");
    c.rule(LEFT, RIGHT, top - 2.0, 0.6);
}

fn row(c: &mut Canvas<'_>, y: f32, l: &SheetLine<'_>, currency: Currency) {
    let desc = c.fit(l.description, DESCRIPTION_END - LEFT, BODY, Face::Regular);
    c.text(LEFT, y, BODY, Face::Regular, &desc);
    c.text_right(QTY_END, y, BODY, Face::Regular, &quantity(l.quantity));
    if let Some(u) = l.unit_amount {
        c.text_right(UNIT_END, y, BODY, Face::Regular, &unit_price(u, currency));
    }
    c.text_right(TAX_END, y, BODY, Face::Regular, &money(l.tax, currency));
    c.text_right(RIGHT, y, BODY, Face::Regular, &money(l.net, currency));
}

/// The notice, wrapped to the page.
fn notice_lines(c: &Canvas<'_>, s: &Sheet<'_>) -> Vec<String> {
    s.notice
        .map(|n| c.wrap(n, RIGHT - LEFT, BODY, Face::Regular))
        .unwrap_or_default()
}

/// How many rows the closing block takes.
fn closing_rows(s: &Sheet<'_>, fonts: &Fonts) -> usize {
    let c = Canvas::new(fonts);
    // Subtotal, each rate, total, amount due, status, a gap; then the notice.
    4 + s.summary.len() + 2 + notice_lines(&c, s).len()
}

/// Totals, tax summary, amount due, payment status and notice, from `y` down.
fn closing_block(c: &mut Canvas<'_>, mut y: f32, s: &Sheet<'_>) {
    c.rule(118.0, RIGHT, y + 3.0, 0.4);
    let pair = |c: &mut Canvas<'_>, y: f32, label: &str, value: String, face: Face| {
        c.text(120.0, y, BODY, face, label);
        c.text_right(RIGHT, y, BODY, face, &value);
    };
    pair(
        c,
        y,
        "Subtotal",
        money(s.totals.net, s.currency),
        Face::Regular,
    );
    y -= ROW;
    for share in s.summary {
        let label = match &share.rate {
            Some(r) => format!(
                "{} {}{} on {}",
                r.name,
                percent(r.percentage),
                if r.inclusive { " (incl.)" } else { "" },
                money(share.net, s.currency)
            ),
            None => "Tax".to_string(),
        };
        let label = c.fit(&label, RIGHT - 120.0 - 28.0, BODY, Face::Regular);
        pair(c, y, &label, money(share.tax, s.currency), Face::Regular);
        y -= ROW;
    }
    pair(c, y, "Total", money(s.totals.gross, s.currency), Face::Bold);
    y -= ROW;
    let due_label = match s.kind {
        Kind::Invoice => "Amount due",
        Kind::CreditNote => "Amount credited",
    };
    pair(c, y, due_label, money(s.amount_due, s.currency), Face::Bold);
    y -= ROW;
    let status = match (s.kind, s.paid, s.due_at) {
        (Kind::CreditNote, _, _) => "Credited to your account".to_string(),
        (Kind::Invoice, true, _) => "Paid".to_string(),
        (Kind::Invoice, false, Some(due)) => format!("Payment due by {}", date(due)),
        (Kind::Invoice, false, None) => "Payment due".to_string(),
    };
    c.text_right(RIGHT, y, BODY, Face::Regular, &status);
    y -= ROW * 2.0;
    for line in notice_lines(c, s) {
        c.text(LEFT, y, BODY, Face::Regular, &line);
        y -= 4.3;
    }
}

fn footer(c: &mut Canvas<'_>, s: &Sheet<'_>, page: usize, pages: usize) {
    c.rule(LEFT, RIGHT, 17.0, 0.3);
    let left = format!("{} · {}", s.number, s.seller.name);
    let left = c.fit(&left, 120.0, 8.0, Face::Regular);
    c.text(LEFT, 12.0, 8.0, Face::Regular, &left);
    c.text_right(
        RIGHT,
        12.0,
        8.0,
        Face::Regular,
        &format!("Page {page} of {pages}"),
    );
}

#[cfg(test)]
mod tests;
