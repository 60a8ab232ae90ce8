//! `cargo xtask bench all`: every benchmark, one after another, each in a process of its
//! own (its output shown as it runs), then one summary table at the top of BENCHMARKS.md,
//! between the `bench-all` markers: the date, the machine, and each headline figure beside
//! the baseline measured in the same run, the target and whether it was met. The detailed
//! sections stay as the benches' own write-ups.
//!
//! A bench reports a headline by printing one `BENCH-HEADLINE {json}` line ([`headline`]);
//! the summary is built from those lines only, so a figure cannot drift from its bench.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const MARK: &str = "BENCH-HEADLINE ";
const START: &str = "<!-- bench-all:start (cargo xtask bench all rewrites this table) -->";
const END: &str = "<!-- bench-all:end -->";

/// What a headline compares: the figure, the baseline from the same run, the target.
pub struct Headline<'a> {
    pub bench: &'a str,
    pub what: &'a str,
    pub value: String,
    pub baseline: String,
    /// `None`: no target set (the figure is reported, not judged).
    pub target: Option<&'a str>,
    pub met: bool,
}

/// Prints the headline line `bench all` collects.
pub fn headline(h: Headline) {
    println!(
        "{MARK}{}",
        json!({"bench": h.bench, "what": h.what, "value": h.value, "baseline": h.baseline,
               "target": h.target, "met": h.target.map(|_| h.met)})
    );
}

/// The benches `all` runs, with their arguments: sized so the whole takes about half an hour
/// on the reference machine.
const RUNS: &[&[&str]] = &[
    &[
        "pipeline",
        "--records",
        "1000000",
        "--workers",
        "1",
        "2",
        "4",
    ],
    &["billing", "--synthetic", "1000000"],
    &["billing-run", "--records", "1000000"],
    &["gateway", "--seconds", "10", "--connections", "64"],
    &[
        "metering",
        "--records",
        "1000000",
        "--connections",
        "8",
        "--seconds",
        "10",
    ],
    &["invoicing", "--tenants", "2000"],
    &["payments", "--callbacks", "20000", "--intents", "2000"],
    &["notifications"],
];

pub fn run() -> Result<ExitCode> {
    let exe = std::env::current_exe().context("the xtask executable")?;
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for args in RUNS {
        println!("\n=== cargo xtask bench {}", args.join(" "));
        let mut child = Command::new(&exe)
            .arg("bench")
            .args(*args)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("bench {}", args[0]))?;
        let out = child.stdout.take().context("bench stdout")?;
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            match line.strip_prefix(MARK) {
                Some(j) => rows.push(serde_json::from_str::<Value>(j)?),
                None => println!("{line}"),
            }
        }
        if !child.wait()?.success() {
            failed.push(args[0]);
        }
    }
    let table = summary(&rows)?;
    println!("\n{table}");
    let path = crate::infra::workspace_root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path)?;
    std::fs::write(&path, splice(&text, &table))?;
    println!("BENCHMARKS.md: summary rewritten");
    if !failed.is_empty() {
        bail!("benches that failed: {}", failed.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// The table with its heading lines: date and machine.
fn summary(rows: &[Value]) -> Result<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut t = format!(
        "{START}\n`cargo xtask bench all`, {}: {cores} cores ({cpu}), {mem_gib:.0} GiB, {rustc}. \
         Each figure beside its baseline from the same run; details in the sections below.\n\n\
         | bench | figure | measured | baseline (same run) | target | met |\n| --- | --- | --- | --- | --- | --- |\n",
        chrono::Utc::now().format("%Y-%m-%d"),
    );
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or("—").replace('|', "\\|");
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            s("bench"),
            s("what"),
            s("value"),
            s("baseline"),
            s("target"),
            match r["met"].as_bool() {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            }
        ));
    }
    t.push_str(END);
    Ok(t)
}

/// `text` with the table between the markers replaced, or inserted after the title.
fn splice(text: &str, table: &str) -> String {
    if let (Some(a), Some(b)) = (text.find(START), text.find(END)) {
        return format!("{}{table}{}", &text[..a], &text[b + END.len()..]);
    }
    match text.find("\n## ") {
        Some(i) => format!("{}\n{table}\n{}", &text[..i], &text[i..]),
        None => format!("{text}\n{table}\n"),
    }
}

/// Runs `cmd`, shows its output, and returns it (for the figures in its table rows).
pub fn echoed(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("running a bench step")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    print!("{text}");
    if !out.status.success() {
        bail!("{cmd:?} failed");
    }
    Ok(text)
}

/// Column `col` (0 = the label) of the markdown table row in `text` whose label starts with
/// `label`, as a number.
pub fn cell(text: &str, label: &str, col: usize) -> Option<f64> {
    text.lines()
        .map(|l| l.split('|').map(str::trim).skip(1).collect::<Vec<_>>())
        .find(|cells| cells.first().is_some_and(|c| c.starts_with(label)))
        .and_then(|cells| cells.get(col)?.trim_end_matches(['x', '×']).parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_replaces_the_previous_one_and_nothing_else() {
        let first = splice(
            "# B\n\nintro\n\n## One\nx\n",
            &format!("{START}\nold\n{END}"),
        );
        assert_eq!(
            first,
            format!("# B\n\nintro\n\n{START}\nold\n{END}\n\n## One\nx\n")
        );
        let second = splice(&first, &format!("{START}\nnew\n{END}"));
        assert_eq!(
            second,
            format!("# B\n\nintro\n\n{START}\nnew\n{END}\n\n## One\nx\n")
        );
    }

    #[test]
    fn cells_are_read_from_the_row_with_the_label() {
        let t = "| target | c | records/s |\n| --- | --- | --- |\n| gateway: POST | 8 | 76600 |\n| other | 1 | 2.5x |";
        assert_eq!(cell(t, "gateway", 2), Some(76600.0));
        assert_eq!(cell(t, "other", 2), Some(2.5));
        assert_eq!(cell(t, "missing", 2), None);
    }
}
