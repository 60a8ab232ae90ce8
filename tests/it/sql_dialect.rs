//! Postgres-only SQL is used on purpose or not at all: every construct below that CockroachDB
//! lacks (or treats differently) must be listed in `docs/cockroachdb.md` with exactly the
//! services using it, and its fallback. A new use fails here until it is written down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// (the construct as the doc's table names it, the texts that reveal it in code or SQL).
const CONSTRUCTS: &[(&str, &[&str])] = &[
    (
        "pg_advisory_xact_lock",
        &[
            "pg_advisory_lock",
            "pg_advisory_xact_lock",
            "pg_try_advisory",
        ],
    ),
    ("hashtext", &["hashtext(", "hashtextextended("]),
    (
        "LISTEN/NOTIFY",
        &["pg_notify(", "PgListener", "LISTEN ", "NOTIFY "],
    ),
    (
        "COPY binary",
        &["FORMAT binary", "copy_in_raw", "copy_out_raw"],
    ),
    ("ctid", &["ctid"]),
    (
        "SET LOCAL planner/commit settings",
        &[
            "synchronous_commit",
            "enable_indexscan",
            "enable_bitmapscan",
            "enable_seqscan",
        ],
    ),
    ("SKIP LOCKED", &["SKIP LOCKED"]),
    ("FOR SHARE/FOR KEY SHARE", &["FOR SHARE", "FOR KEY SHARE"]),
    (
        "BIGSERIAL",
        &["SERIAL PRIMARY", "BIGSERIAL", "nextval(", "CREATE SEQUENCE"],
    ),
    ("plpgsql trigger", &["LANGUAGE plpgsql", "CREATE TRIGGER"]),
    ("date_trunc(…, zone)", &[", 'UTC')"]),
    ("make_interval", &["make_interval("]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs" || x == "sql") {
            out.push(path);
        }
    }
}

/// Which services' code (`crates/<service>/src`, `migrations/<service>`) uses each construct.
fn found() -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut sources: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        sources.push((
            name.trim_end_matches("-service").to_string(),
            dir.join("src"),
        ));
    }
    for entry in std::fs::read_dir(root().join("migrations")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        sources.push((name, dir));
    }
    let mut found: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (service, dir) in sources {
        let mut paths = Vec::new();
        files(&dir, &mut paths);
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap();
            // Comments may name a construct (to explain why it is not used); code may not.
            let code: String = text
                .lines()
                .filter(|l| {
                    let t = l.trim_start();
                    !(t.starts_with("//") || t.starts_with("--"))
                })
                .collect::<Vec<_>>()
                .join("\n");
            for (construct, marks) in CONSTRUCTS {
                if marks.iter().any(|m| code.contains(m)) {
                    found.entry(construct).or_default().insert(service.clone());
                }
            }
        }
    }
    found
}

/// The doc's table: construct → the services it names.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(root().join("docs/cockroachdb.md")).unwrap();
    let start = doc
        .find("<!-- sql-dialect:start")
        .expect("table start marker");
    let end = doc.find("<!-- sql-dialect:end").expect("table end marker");
    let mut table = BTreeMap::new();
    for line in doc[start..end].lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let construct = cells[1].trim_matches('`').to_string();
        let services = cells[2]
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "—")
            .map(String::from)
            .collect();
        table.insert(construct, services);
    }
    table
}

#[test]
fn every_postgres_only_construct_in_use_is_documented_with_the_services_using_it() {
    let found = found();
    let documented = documented();
    let mut wrong = Vec::new();
    for (construct, _) in CONSTRUCTS {
        let used = found.get(construct).cloned().unwrap_or_default();
        let listed = documented.get(*construct).cloned().unwrap_or_default();
        if used != listed {
            wrong.push(format!(
                "`{construct}`: used by {used:?}, docs/cockroachdb.md lists {listed:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "update docs/cockroachdb.md (where it is used, what CockroachDB does, the fallback):\n{}",
        wrong.join("\n")
    );
    for construct in documented.keys() {
        assert!(
            CONSTRUCTS.iter().any(|(c, _)| c == construct),
            "docs/cockroachdb.md lists `{construct}`, which this test does not look for"
        );
    }
}

#[test]
fn the_scan_sees_constructs_where_they_are() {
    // The control: the scanner finds what is known to be there.
    let found = found();
    assert!(
        found["SKIP LOCKED"].contains("platform"),
        "the outbox relay claims rows SKIP LOCKED"
    );
    assert!(
        found["plpgsql trigger"].contains("user"),
        "migrations/user has its trigger"
    );
    assert!(
        !found.contains_key("make_interval"),
        "make_interval was replaced"
    );
}
