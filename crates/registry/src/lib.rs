//! kiln's client of the OCI distribution API: pull images from registries
//! and push them, with docker's authentication (Bearer tokens cached per
//! scope, Basic), docker's credentials (`config.json`, credential helpers),
//! docker's rules for plain HTTP (loopback and listed insecure registries
//! only) and `certs.d` CA certificates, and retries with back-off.
//!
//! **Not for:** keeping images. Pulled blobs stream into a [`BlobSink`] and
//! pushed ones come from a [`BlobSource`]; kiln's CLI and build connect
//! these to `kiln-store`. Libraries never print: progress is [`Event`]s.
//!
//! Every blob is verified as it arrives: a digest or size mismatch aborts
//! the pull and the partial blob is dropped (the sink discards an
//! uncommitted [`BlobWrite`]).
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use kiln_registry::{ClientOptions, Platform, Registry, no_progress};
//! # async fn demo(sink: Arc<dyn kiln_registry::BlobSink>) -> kiln_registry::Result<()> {
//! let reference: kiln_oci::Reference = "127.0.0.1:5000/app:1".parse()?;
//! let registry = Registry::new(reference.domain(), ClientOptions::default())?;
//! let image = registry.pull(&reference, &Platform::host(), sink, &no_progress()).await?;
//! println!("{} layers, manifest {}", image.layers.len(), image.manifest.digest);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod auth;
mod client;
pub mod credentials;
mod error;
mod events;
pub mod manifest;
mod platform;
mod pull;
mod push;

pub use auth::Credential;
pub use client::{ClientOptions, Registry, is_insecure};
pub use error::{BoxError, RegistryError, Result};
pub use events::{Event, Progress, no_progress};
pub use manifest::Descriptor;
pub use platform::Platform;
pub use pull::{BlobSink, BlobWrite, FetchedManifest, PulledImage};
pub use push::{BlobSource, PushImage, Pushed};
