//! End-to-end tests live in `it/`; this empty library only anchors the crate.
