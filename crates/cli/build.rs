//! Link `kiln` with packed relative relocations (DT_RELR) on GNU/Linux.
//!
//! `kiln` is a large position-independent binary with ~26,000 relative
//! relocations, and it starts at least twice per container (the command,
//! then itself as the runtime helper, once per RUN step too). Applying them
//! took the dynamic loader ~1.9 M cycles per start; packed, ~0.2 M
//! (`LD_DEBUG=statistics`), about 0.9 ms less CPU per `kiln run`
//! (`perf stat`, 8.99 → 8.12 ms task-clock). GNU ld 2.38+ and lld know the
//! option; the binary then depends on `GLIBC_ABI_DT_RELR` (glibc 2.36+),
//! so an older C library refuses it by name instead of misbehaving — as it
//! refuses any binary linked against a newer glibc.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
