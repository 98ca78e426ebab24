#![no_std]
// The library target only exists so that tooling (clippy, rust-analyzer) has something to
// check on the host; the programs live in main.rs.
