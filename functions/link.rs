//! Build script of the four function crates: links each function's binary as a position-dependent
//! executable (`-no-pie`) unless `NYLAS_SYNC_PIE` is set.
//!
//! Why: a position-independent executable is relocated by the dynamic loader at every exec. A
//! function's binary holds about 40,000 relative relocations (vtables, string tables, the AWS
//! SDK's static data; the empty Rust Lambda about 2,000), and applying them is about half a
//! millisecond of every cold start (BENCHMARKS.md, cold start). Linked at a fixed address, the
//! linker resolves them and the loader has none to apply. The cost is that the executable's own
//! image is not randomised (ASLR still places the stack, the heap, mmaps and the shared
//! libraries), as for Go's binaries on Lambda. `NYLAS_SYNC_PIE=1 sam build` (or `cargo lambda
//! build`) keeps the default position-independent executable.
//!
//! Only the binaries: libraries, tests and benchmarks link as they always do.

fn main() {
    println!("cargo:rerun-if-env-changed=NYLAS_SYNC_PIE");
    println!("cargo:rerun-if-changed=../link.rs");
    let pie = std::env::var_os("NYLAS_SYNC_PIE").is_some_and(|v| !v.is_empty() && v != "0");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if !pie && os == "linux" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
