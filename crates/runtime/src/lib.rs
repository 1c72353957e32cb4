//! kiln's bundled container runtime: it runs each RUN step of a build in an
//! isolated root, and finished images the way `docker run` does. No dockerd,
//! containerd or runc is needed.
//!
//! Not for: image storage (crate `store`), turning an upper dir into a layer
//! tar (crate `oci`), resource limits (no cgroups are touched), rootless
//! operation (later; user namespaces and `userxattr` overlays keep the door
//! open).
//!
//! # Design
//!
//! kiln never forks in a multi-threaded process. It re-executes itself as
//! a helper (`kiln __runtime SPEC-FILE`, see [`helper`]); `kiln run`
//! without a tty, which has not started a thread yet, runs the helper's
//! code in its own process instead ([`Prepared::run_here`], which checks
//! the thread count first). Either clones the container's PID 1 into new
//! PID, mount, UTS and IPC namespaces (and a network namespace for
//! `--network none`). PID 1 mounts an overlay of the lower dirs
//! (`redirect_dir=off,metacopy=off,index=off`, through short relative
//! links), with a bottom "stubs" dir holding the runtime's mount points so
//! they never reach the upper dir; resolves every mount target with
//! `openat2(RESOLVE_IN_ROOT)`; pivots; sets hostname, user, capabilities;
//! closes inherited descriptors; and execs the command found on the
//! container's `PATH`. All mounts live in the container's mount namespace
//! and vanish with it. PID 1 dies with the process that cloned it
//! (`PR_SET_PDEATHSIG`), and the helper kills it when kiln's lifeline pipe
//! breaks. Every OS call of the set-up goes through [`sys::Sys`], so the
//! mount plan is tested without root against [`sys::RecordingSys`].
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), kiln_runtime::RuntimeError> {
//! use std::path::{Path, PathBuf};
//! use kiln_runtime::{Runtime, StepConfig};
//!
//! // `kiln` itself dispatches `__runtime` first thing in `main`.
//! let rt = Runtime::open(Path::new("/var/lib/kiln/runtime"), Path::new("/proc/self/exe"))?;
//! let config = StepConfig {
//!     argv: vec!["/bin/sh".into(), "-c".into(), "echo hi > /greeting".into()],
//!     cwd: "/".into(),
//!     ..StepConfig::default()
//! };
//! let lowers = [PathBuf::from("/var/lib/kiln/snapshots/base")];
//! // Any `AsyncWrite` sinks: log streams, files, buffers.
//! let (mut out, mut err) = (Vec::new(), Vec::new());
//! let result = rt.run_step(&lowers, &config, &mut out, &mut err).await?;
//! assert_eq!(result.exit_code(), 0);
//! result.persist(Path::new("/var/lib/kiln/snapshots/new"))?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod caps;
mod error;
pub mod helper;
mod init;
mod net;
pub mod prepare;
pub mod rootfs;
pub mod spec;
mod step;
pub mod sys;
pub mod trash;
pub mod upper;
pub mod user;

pub use error::{Result, RuntimeError};
pub use helper::{HELPER_ARG, Outcome};
pub use prepare::{ContainerConfig, Prepared, Runtime, Secret};
pub use spec::{Mount, MountKind, Network};
pub use step::{STEP_HOSTNAME, StepConfig, StepMount, StepResult};

/// If this process was started as the runtime helper (`argv[1]` is
/// [`HELPER_ARG`]), run the container and return the exit status; as a
/// trash reaper ([`trash::REAPER_ARG`]), sweep the trash and return 0; else
/// `None`. Call first thing in `main`, before any thread starts.
pub fn dispatch_helper() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    let verb = args.next()?;
    if verb == HELPER_ARG {
        let spec = args.next()?;
        Some(helper::main(std::path::Path::new(&spec)))
    } else if verb == trash::REAPER_ARG {
        let dir = args.next()?;
        Some(trash::main(std::path::Path::new(&dir)))
    } else {
        None
    }
}
