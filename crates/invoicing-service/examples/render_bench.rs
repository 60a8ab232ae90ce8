//! Renders the 20-line sample invoice (`docs/sample-invoice.pdf`): `--once` renders it once in
//! this fresh process and reports the wall time and peak RSS of the whole process (what a
//! one-off render costs, start-up included); otherwise `--renders N` (default 200) renders it
//! N times warm and reports the median and best. `--html PATH` writes the same invoice as HTML
//! for the Chromium baseline (`cargo xtask bench invoicing`).

use std::time::Instant;

use invoicing_service::pdf::{Fonts, sample_invoice};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The sample as HTML: the same blocks, lines and totals, styled like the PDF.
fn html() -> String {
    let mut rows = String::new();
    rows.push_str("<tr><td>Pro plan — monthly fee</td><td>1</td><td>99.00 EUR</td><td>18.81 EUR</td><td>99.00 EUR</td></tr>");
    rows.push_str("<tr><td>Seats (12 × Pro)</td><td>12</td><td>15.00 EUR</td><td>34.20 EUR</td><td>180.00 EUR</td></tr>");
    for i in 2..20 {
        let q = 1000 + 37 * i;
        let net = (q as f64 * 4.5).round() / 100.0;
        rows.push_str(&format!(
            "<tr><td>API calls, region {}</td><td>{q}</td><td>0.045 EUR</td><td>{:.2} EUR</td><td>{net:.2} EUR</td></tr>",
            ["eu-1", "us-2", "ap-3"][i % 3],
            net * 0.19
        ));
    }
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><style>
body {{ font-family: "DejaVu Sans", sans-serif; font-size: 9pt; margin: 18mm; }}
h1 {{ text-align: right; font-size: 20pt; margin: 0; }}
table {{ width: 100%; border-collapse: collapse; margin-top: 12mm; }}
th {{ text-align: right; border-bottom: 1px solid #888; }} th:first-child, td:first-child {{ text-align: left; }}
td {{ text-align: right; padding: 1mm 0; }} .totals td {{ font-weight: bold; }}
footer {{ position: fixed; bottom: 0; width: 100%; border-top: 1px solid #888; font-size: 8pt; }}
</style></head><body>
<h1>Invoice</h1>
<p><b>Example SaaS GmbH</b><br>Friedrichstraße 123<br>10117 Berlin<br>DE<br>VAT / tax id: DE123456789</p>
<p>Number <b>INV-2026-000123</b><br>Issued <b>2026-12-01</b><br>Due <b>2026-12-31</b><br>Period <b>2026-11-01 – 2026-12-01</b></p>
<p><small><b>BILL TO</b></small><br><b>Ωmega Analytics — ООО «Жар-птица» Köln</b><br>Domkloster 4<br>50667 Köln<br>DE<br>rechnungen@omega.example</p>
<table><tr><th>Description</th><th>Qty</th><th>Unit price</th><th>Tax</th><th>Amount</th></tr>{rows}
<tr><td></td><td></td><td></td><td>Subtotal</td><td>1,403.73 EUR</td></tr>
<tr><td></td><td></td><td></td><td>USt. 19% on 1,403.73 EUR</td><td>266.71 EUR</td></tr>
<tr class="totals"><td></td><td></td><td></td><td>Total</td><td>1,670.44 EUR</td></tr>
<tr class="totals"><td></td><td></td><td></td><td>Amount due</td><td>1,670.44 EUR</td></tr></table>
<p style="text-align:right">Payment due by 2026-12-31</p>
<footer>INV-2026-000123 · Example SaaS GmbH <span style="float:right">Page 1 of 1</span></footer>
</body></html>"#
    )
}

fn main() {
    if let Some(path) = arg("--html") {
        std::fs::write(&path, html()).expect("write the HTML");
        return;
    }
    if std::env::args().any(|a| a == "--once") {
        let started = Instant::now();
        let pdf = sample_invoice(&Fonts::embedded());
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        println!(
            "once_ms={ms:.2} peak_rss_mib={:.1} bytes={}",
            peak_rss_mib(),
            pdf.bytes.len()
        );
        return;
    }
    let n: usize = arg("--renders")
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .max(1);
    let fonts = Fonts::embedded();
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(sample_invoice(&fonts));
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "renders={n} median_ms={:.3} best_ms={:.3} peak_rss_mib={:.1}",
        times[n / 2],
        times[0],
        peak_rss_mib()
    );
}
