//! Program runs the kernel skipped, as `copytrace::trace::skipped` reads them, against runs
//! this test makes it skip: a raw-tracepoint program re-entered on its CPU. Root only; the
//! kprobe cases run in the guest (`guest_tier.rs`). It prints a few lines into the trace
//! buffer.
use copytrace::trace::{Snapshot, skipped};

#[path = "common/skipcheck.rs"]
mod skipcheck;

use skipcheck::{CALLS, attach_raw, getppid_calls, object};

/// Nothing skipped until the victim is attached; then exactly one run per call, of the victim
/// only; the trigger reads 0 and the programs never loaded are not read.
#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn skipped_runs_are_counted_per_program() {
    let mut ebpf = object();
    attach_raw(&mut ebpf, "skipcheck_trigger_raw", "sys_enter");
    getppid_calls();
    let alone = skipped::runs(&ebpf);
    assert_eq!(
        alone.into_iter().collect::<Vec<_>>(),
        vec![("skipcheck_trigger_raw".to_string(), 0)],
        "only loaded programs are read, and printing without a victim skips nothing"
    );

    attach_raw(&mut ebpf, "skipcheck_victim_raw", "bpf_trace_printk");
    getppid_calls();
    let raw = skipped::runs(&ebpf);
    assert_eq!(raw["skipcheck_victim_raw"], CALLS, "{raw:?}");
    assert_eq!(raw["skipcheck_trigger_raw"], 0, "{raw:?}");
    // A snapshot counts them as lost events, and names the program.
    let snap = Snapshot::read(&ebpf).unwrap();
    assert_eq!(snap.counters.skipped_runs, CALLS);
    assert_eq!(snap.counters.lost(), CALLS);
    assert_eq!(
        snap.skipped.into_iter().collect::<Vec<_>>(),
        vec![("skipcheck_victim_raw".to_string(), CALLS)]
    );
    println!("skipped runs: {raw:?}");
}
