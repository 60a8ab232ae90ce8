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

/// Durations are exported as histograms with fixed buckets, not as summaries: a summary's
/// sketch grows with the range of the values it has seen (and is rebuilt every 20 s), while
/// a bucket is a counter; and buckets, unlike quantiles, add up across replicas.
#[test]
fn durations_and_counts_are_exported_in_fixed_buckets() {
    let handle = platform::telemetry::metrics_handle();
    metrics::histogram!("buckets_test_seconds").record(0.0003);
    metrics::histogram!("buckets_test_batches").record(3.0);
    next_upkeep();
    let text = handle.render();
    assert!(
        text.contains(r#"buckets_test_seconds_bucket{le="0.0005"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"buckets_test_batches_bucket{le="4"} 1"#),
        "{text}"
    );
    assert!(!text.contains("quantile="), "{text}");
}

#[test]
fn series_spanning_a_wide_range_hold_fixed_memory() {
    platform::telemetry::metrics_handle();
    let series: Vec<_> = (0..128)
        .map(|s| metrics::histogram!("range_test_seconds", "series" => s.to_string()))
        .collect();
    let before = rss();
    // One microsecond to a hundred seconds, as request and run durations span; in rounds
    // drained by upkeep, so that pending samples do not count.
    for round in 0..8 {
        for h in &series {
            for i in 0..500 {
                let step = f64::from(i * 8 + round) / 4_000.0;
                h.record(10f64.powf(-6.0 + 8.0 * step));
            }
        }
        next_upkeep();
    }
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 4 << 20,
        "128 series grew the process by {} MB",
        grown >> 20
    );
}
