//! Image references, parsed and normalized exactly as docker does
//! (distribution/reference: `ParseNormalizedNamed` + `TagNameOnly`).
//!
//! `busybox` → `docker.io/library/busybox:latest`; `localhost:5000/x` keeps
//! its registry; `name@sha256:…` and `name:tag@sha256:…` are digested
//! references.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;

use crate::Digest;
use crate::error::{OciError, Result};

/// The registry that names without a domain refer to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

// The grammar of distribution/reference, piece by piece.
const ALNUM: &str = "[a-z0-9]+";
const SEPARATOR: &str = "(?:[._]|__|[-]+)";
const DOMAIN_COMPONENT: &str = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const IPV6: &str = r"\[(?:[a-fA-F0-9:]+)\]";
// Go's `\w` is ASCII (`[0-9A-Za-z_]`); Rust's is Unicode, which would accept
// tags docker refuses and makes the regexes ~100 ms slower to compile.
const TAG: &str = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
const DIGEST: &str = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}";

fn path_component() -> String {
    format!("{ALNUM}(?:{SEPARATOR}{ALNUM})*")
}
fn domain_and_port() -> String {
    format!(r"(?:{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*|{IPV6})(?::[0-9]+)?")
}
fn name_pattern() -> String {
    let pc = path_component();
    format!("(?:{}/)?{pc}(?:/{pc})*", domain_and_port())
}

static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        "^({})(?::({TAG}))?(?:@({DIGEST}))?$",
        name_pattern()
    ))
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});
static ANCHORED_NAME: LazyLock<Regex> = LazyLock::new(|| {
    let pc = path_component();
    Regex::new(&format!("^(?:({})/)?({pc}(?:/{pc})*)$", domain_and_port()))
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});
static IDENTIFIER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new("^[a-f0-9]{64}$").unwrap_or_else(|e| unreachable!("static regex: {e}"))
});
static TAG_ONLY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("^{TAG}$")).unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// A normalized image reference: registry domain, repository path, and an
/// optional tag and digest. Display gives the full normalized form
/// (`docker.io/library/busybox:latest`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

fn invalid(input: &str, reason: impl Into<String>) -> OciError {
    OciError::Reference {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

impl Reference {
    /// Parse like `docker pull NAME` does: normalize the domain and
    /// `library/`, and add the `latest` tag when neither tag nor digest is
    /// given.
    pub fn parse(s: &str) -> Result<Self> {
        let mut r = Self::parse_normalized(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(r)
    }

    /// Parse and normalize, but do not add a default tag
    /// (`ParseNormalizedNamed`).
    pub fn parse_normalized(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(invalid(
                s,
                "repository name must have at least one component",
            ));
        }
        if IDENTIFIER.is_match(s) {
            return Err(invalid(
                s,
                "cannot specify 64-byte hexadecimal strings as a repository name",
            ));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote_name = remainder
            .split_once(':')
            .map_or(remainder.as_str(), |(n, _)| n);
        if remote_name.to_lowercase() != remote_name {
            return Err(invalid(
                s,
                format!("repository name ({remote_name}) must be lowercase"),
            ));
        }
        Self::parse_strict(&format!("{domain}/{remainder}")).map_err(|e| match e {
            OciError::Reference { reason, .. } => invalid(s, reason),
            other => other,
        })
    }

    /// Parse a fully qualified reference without normalization (`Parse`).
    pub fn parse_strict(s: &str) -> Result<Self> {
        let Some(caps) = REFERENCE.captures(s) else {
            if s.is_empty() {
                return Err(invalid(
                    s,
                    "repository name must have at least one component",
                ));
            }
            if REFERENCE.is_match(&s.to_lowercase()) {
                return Err(invalid(s, "repository name must be lowercase"));
            }
            return Err(invalid(s, "not a valid image reference"));
        };
        let name = caps.get(1).map_or("", |m| m.as_str());
        if name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(invalid(
                s,
                format!("repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"),
            ));
        }
        let Some(name_caps) = ANCHORED_NAME.captures(name) else {
            return Err(invalid(s, "not a valid image reference"));
        };
        let domain = name_caps.get(1).map_or("", |m| m.as_str()).to_owned();
        let path = name_caps.get(2).map_or("", |m| m.as_str()).to_owned();
        let tag = caps.get(2).map(|m| m.as_str().to_owned());
        let digest = match caps.get(3) {
            Some(m) => Some(m.as_str().parse::<Digest>().map_err(|e| match e {
                OciError::Digest { reason, .. } => invalid(s, reason),
                other => other,
            })?),
            None => None,
        };
        Ok(Self {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry host (and port): `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }
    /// The repository path inside the registry: `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// `domain/path`: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }
    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        if !TAG_ONLY.is_match(tag) {
            return Err(invalid(tag, "invalid tag format"));
        }
        Ok(Self {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_owned()),
            digest: None,
        })
    }
    /// The same repository pinned to `digest` (and no tag).
    #[must_use]
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The short form docker shows: `busybox:latest`, `localhost:5000/x:1`.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_name();
        if let Some(t) = &self.tag {
            out.push(':');
            out.push_str(t);
        }
        if let Some(d) = &self.digest {
            out.push('@');
            out.push_str(d.as_str());
        }
        out
    }

    /// The repository in docker's short form: `busybox`, `user/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_REPO_PREFIX)
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.path)
                .to_owned()
        } else {
            self.name()
        }
    }
}

fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN.clone_into(&mut domain);
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO_PREFIX}{remainder}");
    }
    (domain, remainder)
}

impl FromStr for Reference {
    type Err = OciError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_strict(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalizes_like_docker() {
        for (input, full, familiar) in [
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            ("user/app", "docker.io/user/app:latest", "user/app:latest"),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "index.docker.io/library/x",
                "docker.io/library/x:latest",
                "x:latest",
            ),
            ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
            (
                "localhost:5000/x/y:v1",
                "localhost:5000/x/y:v1",
                "localhost:5000/x/y:v1",
            ),
            (
                "example.com/a/b/c",
                "example.com/a/b/c:latest",
                "example.com/a/b/c:latest",
            ),
            ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
            ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),
            (
                "a__b/c-d--e.f",
                "docker.io/a__b/c-d--e.f:latest",
                "a__b/c-d--e.f:latest",
            ),
        ] {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
            assert_eq!(Reference::parse(full).unwrap(), r, "{full} round trip");
        }
    }

    #[test]
    fn digests() {
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().as_str(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        let r = Reference::parse(&format!("busybox:1@{D}")).unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.to_string(), format!("docker.io/library/busybox:1@{D}"));
    }

    #[test]
    fn rejects_like_docker() {
        let long = format!("a/{}", "b".repeat(260));
        for (input, why) in [
            ("", "at least one component"),
            ("Busybox", "must be lowercase"),
            ("docker.io/Library/x", "must be lowercase"),
            ("a:b:c", "not a valid"),
            ("-x", "not a valid"),
            ("x/", "not a valid"),
            ("x:", "not a valid"),
            ("x:-tag", "not a valid"),
            ("x@sha256:abc", "not a valid"),
            ("x@sha256:e3b0c44298fc1c149afbf4c8996fb924", "length"),
            ("x@md5:e3b0c44298fc1c149afbf4c8996fb924", "unsupported"),
            (&long, "255"),
            (&"a".repeat(64).replace('a', "e"), "64-byte"),
            ("a b", "not a valid"),
            ("x..y", "not a valid"),
            // regression: `\w` in docker's grammar is ASCII only
            ("x:tag\u{e9}", "not a valid"),
        ] {
            let e = Reference::parse(input).unwrap_err().to_string();
            assert!(e.contains(why), "{input:?}: {e}");
            assert!(e.starts_with("invalid reference format"), "{e}");
        }
        assert!(Reference::parse("x").unwrap().with_tag("-bad").is_err());
    }
}
