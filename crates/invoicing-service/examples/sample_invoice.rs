//! Writes the sample invoice to `docs/sample-invoice.pdf` (or the path given).

fn main() -> std::io::Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/sample-invoice.pdf").into()
    });
    let pdf = invoicing_service::pdf::sample_invoice(&invoicing_service::pdf::Fonts::embedded());
    std::fs::write(&path, &pdf.bytes)?;
    println!(
        "{path}: {} bytes, {} page(s), sha256 {}",
        pdf.bytes.len(),
        pdf.pages,
        pdf.sha256
    );
    Ok(())
}
