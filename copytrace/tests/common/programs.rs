//! Which of copytrace's programs are loaded in the kernel (included by the test binaries
//! that check nothing is left behind).
use std::time::{Duration, Instant};

use copytrace::trace::loader;
use copytrace_common::Config;

/// Our program names as the kernel stores them (BPF_OBJ_NAME_LEN = 16, NUL included).
pub fn our_names() -> Vec<String> {
    let ebpf = loader::load_object(&Config::ZERO).expect("object loads");
    ebpf.programs()
        .map(|(name, _)| name.chars().take(15).collect())
        .collect()
}

pub fn ours_loaded(names: &[String]) -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .filter_map(|p| p.name_as_str().map(str::to_string))
        .filter(|n| names.contains(n))
        .collect()
}

/// Our programs still loaded once the kernel has had time to free released ones. A raw
/// tracepoint link drops its program only after an RCU grace period (kernel 6.10+), so right
/// after detach they may still be listed; anything left after 5 s was not released.
pub fn left_loaded(names: &[String]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = ours_loaded(names);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
