//! Only the runtime helper (`kiln-runtime-helper __runtime SPEC`): lets the
//! runtime's tests and benchmark run containers without the `kiln` binary.

fn main() {
    let code = kiln_runtime::dispatch_helper().unwrap_or(2);
    std::process::exit(code);
}
