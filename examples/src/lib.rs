//! Runnable raftconf examples live next to this crate's `Cargo.toml` (see its
//! `[[example]]` entries); this library is empty. Run one with, e.g.,
//! `cargo run -p raftconf-examples --example hot_reload`.
