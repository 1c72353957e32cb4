//! Platforms (`os/arch[/variant]`) and picking one from an index.

use std::fmt;
use std::str::FromStr;

use crate::error::RegistryError;

/// An image platform: `linux/amd64`, `linux/arm64/v8`, `linux/arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// CPU architecture, in Go's names (`amd64`, `arm64`, `arm`, `386`, …).
    pub architecture: String,
    /// CPU variant (`v7`, `v8`), when it matters.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this machine runs (linux and its architecture).
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            other => (other, None),
        };
        Self {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Whether an index entry's platform satisfies this (wanted) one.
    /// A wanted platform without variant takes any variant; `arm64` and
    /// `arm64/v8` are the same (containerd's normalization).
    pub fn matches(&self, offered: &Platform) -> bool {
        if self.os != offered.os
            || normalize_arch(&self.architecture) != normalize_arch(&offered.architecture)
        {
            return false;
        }
        match &self.variant {
            None => true,
            Some(v) => {
                let norm = |p: &Platform, v: Option<&str>| -> Option<String> {
                    match (p.architecture.as_str(), v) {
                        ("arm64" | "aarch64", None | Some("v8")) => None,
                        (_, v) => v.map(str::to_owned),
                    }
                };
                norm(self, Some(v)) == norm(offered, offered.variant.as_deref())
            }
        }
    }
}

fn normalize_arch(a: &str) -> &str {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" => "386",
        other => other,
    }
}

impl FromStr for Platform {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self {
                os: os.to_ascii_lowercase(),
                architecture: normalize_arch(&arch.to_ascii_lowercase()).to_owned(),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Self {
                os: os.to_ascii_lowercase(),
                architecture: normalize_arch(&arch.to_ascii_lowercase()).to_owned(),
                variant: Some(variant.to_ascii_lowercase()),
            }),
            _ => Err(RegistryError::Platform(s.to_owned())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(p("linux/amd64").to_string(), "linux/amd64");
        assert_eq!(p("linux/arm/v7").to_string(), "linux/arm/v7");
        assert_eq!(p("Linux/x86_64").to_string(), "linux/amd64");
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_rules() {
        assert!(p("linux/amd64").matches(&p("linux/amd64")));
        assert!(!p("linux/amd64").matches(&p("linux/arm64")));
        assert!(!p("linux/amd64").matches(&p("windows/amd64")));
        assert!(p("linux/arm").matches(&p("linux/arm/v6")));
        assert!(p("linux/arm/v7").matches(&p("linux/arm/v7")));
        assert!(!p("linux/arm/v7").matches(&p("linux/arm/v6")));
        assert!(p("linux/arm64/v8").matches(&p("linux/arm64")));
        assert!(p("linux/arm64").matches(&p("linux/arm64/v8")));
    }
}
