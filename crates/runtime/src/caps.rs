//! Linux capabilities: names, docker's default set, `--cap-add/--cap-drop`,
//! and applying a set to the current process.

use nix::errno::Errno;

use crate::error::{Result, RuntimeError};

/// Capability names in kernel order (`CAP_CHOWN` is 0).
pub const ALL: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// docker's default capability set (moby `oci/caps/defaults.go`).
pub const DOCKER_DEFAULT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Normalise a user-given name (`net_admin`, `CAP_NET_ADMIN`) or `ALL`.
fn normalise(name: &str) -> Result<String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(RuntimeError::UnknownCapability {
            name: name.to_owned(),
        })
    }
}

/// The set a container gets: docker's defaults (every capability when
/// `privileged`), plus `add`, minus `drop`; `ALL` works on both sides like
/// docker's (`--cap-drop ALL --cap-add CHOWN` keeps only `CAP_CHOWN`).
pub fn compute(add: &[String], drop: &[String], privileged: bool) -> Result<Vec<String>> {
    let add: Vec<String> = add.iter().map(|n| normalise(n)).collect::<Result<_>>()?;
    let drop: Vec<String> = drop.iter().map(|n| normalise(n)).collect::<Result<_>>()?;
    if privileged || add.iter().any(|a| a == "ALL") {
        return Ok(ALL.iter().map(|s| (*s).to_owned()).collect());
    }
    let base: Vec<&str> = if drop.iter().any(|d| d == "ALL") {
        Vec::new()
    } else {
        DOCKER_DEFAULT.to_vec()
    };
    let mut out: Vec<String> = base
        .into_iter()
        .filter(|c| !drop.iter().any(|d| d == c))
        .map(str::to_owned)
        .collect();
    for a in add {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

/// The bit mask of a set of names (unknown names are ignored: the set was
/// validated by [`compute`]).
pub fn mask(names: &[String]) -> u64 {
    names
        .iter()
        .filter_map(|n| ALL.iter().position(|c| c == n))
        .fold(0, |m, i| m | (1u64 << i))
}

/// The permitted set of the current process (kiln may itself run in a
/// container that withholds some capabilities; a set can only shrink).
pub(crate) fn permitted() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapPrm:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// Drop everything outside `mask` from the bounding set (before the uid
/// changes; needs `CAP_SETPCAP`).
pub(crate) fn drop_bounding(mask: u64) -> Result<(), Errno> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last.min(63) {
        if mask & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments.
            let rc =
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            if rc < 0 && Errno::last() != Errno::EINVAL {
                return Err(Errno::last());
            }
        }
    }
    Ok(())
}

/// Set the effective, permitted and inheritable sets to `mask` (after the
/// uid changed: for a non-root user the kernel already cleared them, and
/// they stay empty as with docker).
pub(crate) fn set_process(mask: u64) -> Result<(), Errno> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    #[allow(clippy::cast_possible_truncation)] // splitting 64 bits in two halves
    let halves = [mask as u32, (mask >> 32) as u32];
    let data = halves.map(|h| Data {
        effective: h,
        permitted: h,
        inheritable: h,
    });
    // SAFETY: header and two data structs, as capset(2) v3 wants.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if rc < 0 { Err(Errno::last()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn add_and_drop_work_on_docker_defaults() {
        let caps = compute(&s(&["net_admin"]), &s(&["CAP_CHOWN", "mknod"]), false).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".into()));
        assert!(!caps.contains(&"CAP_CHOWN".into()));
        assert!(!caps.contains(&"CAP_MKNOD".into()));
        assert_eq!(caps.len(), DOCKER_DEFAULT.len() - 1);
        assert_eq!(
            compute(&s(&["chown"]), &s(&["all"]), false).unwrap(),
            s(&["CAP_CHOWN"])
        );
        assert_eq!(compute(&[], &[], true).unwrap().len(), ALL.len());
        assert_eq!(compute(&s(&["ALL"]), &[], false).unwrap().len(), ALL.len());
        assert!(
            compute(&s(&["FLY"]), &[], false)
                .unwrap_err()
                .to_string()
                .contains("`FLY`")
        );
    }

    #[test]
    fn masks_follow_kernel_numbers() {
        assert_eq!(mask(&s(&["CAP_CHOWN", "CAP_KILL"])), 0b10_0001);
        assert_eq!(mask(&s(&["CAP_CHECKPOINT_RESTORE"])), 1 << 40);
    }
}
