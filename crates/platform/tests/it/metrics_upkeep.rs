//! The metrics recorder's memory stays bounded with nobody scraping `/metrics`.

/// Resident set size of this process, in bytes (nextest runs each test in its own process).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Waits (at most 10 s) for the recorder's next upkeep.
fn next_upkeep() {
    let seen = platform::telemetry::metrics_upkeeps();
    for _ in 0..200 {
        if platform::telemetry::metrics_upkeeps() > seen {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no upkeep of the metrics recorder in 10 s");
}

#[test]
fn histogram_samples_do_not_pile_up_without_a_scrape() {
    platform::telemetry::metrics_handle();
    let round = || {
        for i in 0..500_000u32 {
            metrics::histogram!("upkeep_test_seconds").record(f64::from(i % 1000));
        }
        next_upkeep();
    };
    // The first rounds size the recorder's buffers; after them, rounds reuse them.
    round();
    round();
    let settled = rss();
    for _ in 0..6 {
        round();
    }
    let grown = rss().saturating_sub(settled);
    // Kept, 3M samples would be 24 MB of f64s.
    assert!(
        grown < 8 << 20,
        "grew {} MB over 3M samples without a scrape",
        grown >> 20
    );
}
