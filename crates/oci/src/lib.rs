//! The image model of kiln: image references, content digests, OCI
//! configs/manifests/indexes, layer tars and their whiteouts, compression
//! (gzip and zstd, multi-threaded), and image archives (docker-archive, OCI).
//!
//! This crate knows formats, not places: it never decides where images are
//! kept (that is `kiln-store`) nor talks to registries (`kiln-registry`).
//! The layer functions work on any directory and any `Read`/`Write`.
//!
//! # Example
//!
//! ```
//! use kiln_oci::{Digest, Reference};
//!
//! let r: Reference = "busybox".parse()?;
//! assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
//! assert_eq!(r.familiar(), "busybox:latest");
//!
//! let d = Digest::sha256_of(b"");
//! assert_eq!(d.short(), "e3b0c44298fc");
//! # Ok::<(), kiln_oci::OciError>(())
//! ```
#![deny(missing_docs)]

pub mod archive;
pub mod compress;
pub mod config;
pub mod digest;
mod error;
pub mod layer;
pub mod media;
pub mod reference;

pub use compress::Compression;
pub use digest::{Digest, DigestWriter, Hasher, ParallelDigestWriter, VerifyingReader};
pub use error::{OciError, Result};
pub use reference::Reference;

/// The OCI image-spec types (manifest, index, config, descriptor), re-exported
/// so that all crates use one version.
pub use oci_spec::image as spec;
