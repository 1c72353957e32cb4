//! Layer tars: [`create`](create::create_layer) one from a directory (an
//! overlay upper dir or a whole tree) and [`apply`](apply::apply_layer) one
//! onto a directory.
//!
//! Whiteouts follow the OCI image spec: `.wh.NAME` deletes `NAME` from the
//! layers below, `.wh..wh..opq` makes a directory opaque. On disk (overlayfs)
//! the same facts are a 0/0 character device and a `trusted.overlay.opaque`
//! (or `user.overlay.opaque`) xattr; both directions are translated here.

pub mod apply;
pub mod create;

pub use apply::{ApplyOptions, ApplyStats, WhiteoutMode, apply_layer};
pub use create::{CreateOptions, LayerStats, create_layer};

/// Prefix of an OCI whiteout file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the OCI opaque-directory marker.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// Prefix of whiteout meta files (reserved names that are never content).
pub const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// The overlayfs opaque xattr (privileged overlay mounts).
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The overlayfs opaque xattr (unprivileged `userxattr` mounts).
pub const OVERLAY_OPAQUE_USER_XATTR: &str = "user.overlay.opaque";
/// PAX record prefix for extended attributes (as GNU tar and Go write them).
pub(crate) const PAX_XATTR: &str = "SCHILY.xattr.";
