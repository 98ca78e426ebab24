//! Rebuild the eBPF object when the linker changes (a bpf-linker built for another LLVM
//! produces objects the kernel may reject, so a stale object must not survive a relink).
fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
