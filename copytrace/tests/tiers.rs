//! Tier against tier on this host: the raw and the classic tracepoint tiers, attached at once
//! to one workload, must agree on every path both see (the guests compare all four tiers:
//! `guest_tiers_agree_on_one_workload`).
use copytrace::trace::Tier;

mod common;
#[path = "common/workload.rs"]
mod workload;

#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn tracepoint_tiers_agree_on_one_workload() {
    let failures = workload::tiers_agree_on_one_workload(&[Tier::RawTp, Tier::Tracepoint]);
    assert!(
        failures.is_empty(),
        "tiers disagree:\n{}",
        failures.join("\n")
    );
}
