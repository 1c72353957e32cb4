//! Link `kiln` as a position-dependent executable on GNU/Linux.
//!
//! `kiln` starts at least twice per container (the command, then itself as
//! the runtime helper, once per RUN step too). As a position-independent
//! executable, the dynamic loader must write every pointer in its 460 KB of
//! `.data.rel.ro` and its GOT at each start (~26,000 relative relocations):
//! ~115 pages copied on write, 218 page faults and 1.11 ms of CPU for a
//! bare start of the helper. Linked at a fixed address there is nothing to
//! relocate: 105 page faults and 0.85 ms per start, and `kiln run --rm
//! IMAGE true` 5.35 → 4.57 ms of CPU (`perf stat`, interleaved runs, store
//! on a tmpfs), level with crun.
//!
//! The price: the kernel cannot place kiln's own code and data at a random
//! address (ASLR still applies to its heap, stack and shared libraries) —
//! as for runc, containerd, skopeo and umoci, which Go links the same way.
//! Remove the `-no-pie` line to trade the start-up time back for it.
//!
//! Relative relocations are also packed (DT_RELR; GNU ld 2.38+ and lld
//! know the option): a no-op for a fixed-address executable, and what keeps
//! the start cheap should `-no-pie` be dropped. The binary then depends on
//! `GLIBC_ABI_DT_RELR` (glibc 2.36+), so an older C library refuses it by
//! name instead of misbehaving — as it refuses any binary linked against a
//! newer glibc.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
