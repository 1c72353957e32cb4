//! The one error type of this crate.

use std::path::PathBuf;

use kiln_oci::{Digest, OciError};

/// A boxed error from a caller-supplied sink or source (the store).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry could not be reached (after retries).
    #[error("cannot reach registry {registry}: {reason}")]
    Connect {
        /// Host (and port).
        registry: String,
        /// What failed, with its causes.
        reason: String,
    },
    /// 401: the registry wants credentials, or refused the ones given.
    #[error(
        "unauthorized: {registry} refused {what}{}{}",
        repository.as_ref().map(|r| format!(" for repository {r}")).unwrap_or_default(),
        if *had_credentials { "; the credentials were rejected (check `kiln login`)" } else { "; log in with `kiln login` first" }
    )]
    Unauthorized {
        /// Host (and port).
        registry: String,
        /// The repository, when the request was about one.
        repository: Option<String>,
        /// What was being done.
        what: String,
        /// Whether credentials were sent.
        had_credentials: bool,
    },
    /// 403: authenticated but not allowed.
    #[error("denied: {registry} does not allow {what}{}", repository.as_ref().map(|r| format!(" on repository {r}")).unwrap_or_default())]
    Denied {
        /// Host (and port).
        registry: String,
        /// The repository, when the request was about one.
        repository: Option<String>,
        /// What was being done.
        what: String,
    },
    /// 404 on a manifest or blob.
    #[error("not found: {what} in repository {repository} on {registry}")]
    NotFound {
        /// Host (and port).
        registry: String,
        /// The repository.
        repository: String,
        /// `manifest latest`, `blob sha256:…`.
        what: String,
    },
    /// Any other unexpected HTTP status (after retries for 5xx and 429).
    #[error("{registry}: {what} failed with HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        /// Host (and port).
        registry: String,
        /// What was being done.
        what: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body (registry error JSON).
        body: String,
    },
    /// The registry answered something this client cannot use.
    #[error("{registry}: {reason}")]
    Protocol {
        /// Host (and port).
        registry: String,
        /// What is wrong.
        reason: String,
    },
    /// A manifest of docker's schema 1 (deprecated, unsigned content).
    #[error(
        "{reference} is a docker schema 1 image (media type {media_type}); schema 1 is deprecated and not supported: push it again with a current docker or skopeo"
    )]
    Schema1 {
        /// The image.
        reference: String,
        /// The manifest's media type.
        media_type: String,
    },
    /// No manifest in an index matches the wanted platform.
    #[error("{reference} has no image for platform {wanted}; available: {}", available.join(", "))]
    NoMatchingPlatform {
        /// The image.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// Platforms the index offers.
        available: Vec<String>,
    },
    /// Content whose digest or size differs from what was announced.
    #[error("{registry}: {what} failed verification: {source}")]
    Verify {
        /// Host (and port).
        registry: String,
        /// `blob sha256:…`, `manifest latest`.
        what: String,
        /// The mismatch.
        #[source]
        source: OciError,
    },
    /// The blob store (sink or source) failed.
    #[error("storing blob {digest}: {source}")]
    Store {
        /// The blob.
        digest: Digest,
        /// The store's error.
        #[source]
        source: BoxError,
    },
    /// A platform string that is not `os/arch[/variant]`.
    #[error(
        "invalid platform `{0}`: expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"
    )]
    Platform(String),
    /// The credentials file or a credential helper failed.
    #[error("credentials: {0}")]
    Credentials(String),
    /// A file-system operation failed.
    #[error("{op} `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// TLS set-up (certificates in certs.d) failed.
    #[error("TLS configuration for {registry}: {reason}")]
    Tls {
        /// Host (and port).
        registry: String,
        /// What is wrong.
        reason: String,
    },
    /// An image-format error (reference, digest, JSON).
    #[error(transparent)]
    Oci(#[from] OciError),
}

/// Short for `Result<T, RegistryError>`.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// An error and all its causes on one line (reqwest hides the useful part,
/// "connection refused", in its source chain).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}
