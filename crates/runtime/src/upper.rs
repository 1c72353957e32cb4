//! Tidying an upper dir into a layer diff.
//!
//! After a run the upper dir holds the changes: new and changed files,
//! whiteouts (0/0 character devices) for deleted ones, and
//! `trusted.overlay.opaque=y` on directories that replaced a lower one. It
//! also holds overlayfs' own bookkeeping (`trusted.overlay.origin`,
//! `.impure`, …), which means nothing in a layer: [`clean`] strips it and
//! keeps the opaque marker. Turning the result into a tar (whiteouts to
//! `.wh.` entries) is crate `oci`'s job.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

use crate::error::{Result, RuntimeError};

/// The opaque-directory marker (rootful overlay).
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Strip every `trusted.overlay.*` xattr but the opaque marker, in the
/// whole tree (symlinks are not followed).
pub fn clean(upper: &Path) -> Result<()> {
    strip(upper)?;
    let meta = fs_err::symlink_metadata(upper)?;
    if meta.is_dir() {
        for entry in fs_err::read_dir(upper)? {
            let entry = entry?;
            let ft = entry.file_type()?;
            if ft.is_dir() {
                clean(&entry.path())?;
            } else {
                strip(&entry.path())?;
            }
        }
    }
    Ok(())
}

fn strip(path: &Path) -> Result<()> {
    for name in list_xattrs(path).map_err(RuntimeError::sys("listxattr", path))? {
        if name.starts_with(b"trusted.overlay.") && name != OPAQUE_XATTR.as_bytes() {
            let c = CString::new(name)
                .map_err(|_| RuntimeError::sys("removexattr", path)(Errno::EINVAL))?;
            let p = CString::new(path.as_os_str().as_bytes())
                .map_err(|_| RuntimeError::sys("removexattr", path)(Errno::EINVAL))?;
            // SAFETY: two NUL-terminated strings.
            if unsafe { libc::lremovexattr(p.as_ptr(), c.as_ptr()) } < 0 {
                let errno = Errno::last();
                if errno != Errno::ENODATA {
                    return Err(RuntimeError::sys("removexattr", path)(errno));
                }
            }
        }
    }
    Ok(())
}

/// The xattr names of `path` (not following a symlink).
pub fn list_xattrs(path: &Path) -> Result<Vec<Vec<u8>>, Errno> {
    let p = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: the buffer's pointer and length describe owned memory.
        let n = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(usize::try_from(n).unwrap_or(0));
            return Ok(buf
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(<[u8]>::to_vec)
                .collect());
        }
        match Errno::last() {
            Errno::ERANGE => buf.resize(buf.len() * 4, 0),
            Errno::ENOTSUP => return Ok(Vec::new()),
            e => return Err(e),
        }
    }
}

/// Read one xattr (`None` when absent).
pub fn get_xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>, Errno> {
    let p = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let n = CString::new(name).map_err(|_| Errno::EINVAL)?;
    let mut buf = vec![0u8; 256];
    // SAFETY: the buffer's pointer and length describe owned memory.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return match Errno::last() {
            Errno::ENODATA | Errno::ENOTSUP => Ok(None),
            e => Err(e),
        };
    }
    buf.truncate(usize::try_from(len).unwrap_or(0));
    Ok(Some(buf))
}
