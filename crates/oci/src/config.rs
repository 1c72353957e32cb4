//! The image configuration (the blob whose digest is the image id), in
//! docker's superset of the OCI schema: `Healthcheck`, `OnBuild`, `Shell`
//! and `ArgsEscaped` are kept, maps are ordered (so the same config always
//! serializes to the same bytes), and fields kiln does not know are carried
//! through unchanged in `extra`.
//!
//! Configs that came from elsewhere must be stored as the bytes they came
//! as; this type is for reading them and for writing new ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Digest;
use crate::error::{OciError, Result};

/// Formats `t` as Go's `time.RFC3339Nano` does, which is how docker, skopeo
/// and every other Go tool write image timestamps: UTC with `Z`, and the
/// fraction of a second without trailing zeros (none at all on a whole
/// second). A Go tool that decodes and re-encodes one of kiln's configs then
/// writes the same bytes, so the image id survives the trip.
pub fn timestamp(t: std::time::SystemTime) -> String {
    let full = chrono::DateTime::<chrono::Utc>::from(t)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let body = full.strip_suffix('Z').unwrap_or(&full);
    match body.split_once('.') {
        Some((secs, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{secs}Z")
            } else {
                format!("{secs}.{frac}Z")
            }
        }
        None => format!("{body}Z"),
    }
}

/// An empty JSON object, as Go writes `map[string]struct{}` values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// The image config.
// Go's `map[string]struct{}` (ports, volumes) is a map to empty objects on
// the wire; a map keeps the JSON shape without a custom serializer.
#[allow(clippy::zero_sized_map_values)]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture (`amd64`, `arm64`).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// CPU variant (`v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// What a container of this image runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    /// The layers' diff ids.
    #[serde(default)]
    pub rootfs: RootFs,
    /// One entry per build step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Fields kiln does not interpret, kept as they were.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The runtime part of an image config (docker's field names).
#[allow(clippy::zero_sized_map_values)]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `USER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `EXPOSE`: `80/tcp` → `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    /// `ENV`: `KEY=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// `ENTRYPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    /// `WORKDIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `LABEL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `STOPSIGNAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// `HEALTHCHECK` (docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Value>,
    /// `ONBUILD` triggers (docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// `SHELL` (docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Windows-only escaping hint (docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// Fields kiln does not interpret.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The layer list of a config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Digests of the uncompressed layers, bottom first.
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        Self {
            kind: "layers".to_owned(),
            diff_ids: Vec::new(),
        }
    }
}

/// One build step in the history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// Parse config bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|source| OciError::Json {
            what: "image config",
            source,
        })
    }

    /// Canonical bytes (compact JSON, ordered maps) and their digest: the
    /// image id.
    pub fn to_bytes(&self) -> (Vec<u8>, Digest) {
        // Serializing plain data with string keys cannot fail.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let digest = Digest::sha256_of(&bytes);
        (bytes, digest)
    }

    /// The container config, created if absent.
    pub fn container_mut(&mut self) -> &mut ContainerConfig {
        self.config.get_or_insert_with(ContainerConfig::default)
    }

    /// Apply a Dockerfile-style change, as `docker import --change` does:
    /// `CMD`, `ENTRYPOINT`, `ENV`, `EXPOSE`, `LABEL`, `ONBUILD`,
    /// `STOPSIGNAL`, `USER`, `VOLUME`, `WORKDIR`.
    #[allow(clippy::zero_sized_map_values)]
    pub fn apply_change(&mut self, change: &str) -> Result<()> {
        let bad = |reason: &str| OciError::Change {
            input: change.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = change.trim();
        let (word, rest) = trimmed
            .split_once(char::is_whitespace)
            .map_or((trimmed, ""), |(w, r)| (w, r.trim()));
        let instr = word.to_ascii_uppercase();
        if rest.is_empty() {
            return Err(bad(&format!("{instr} needs an argument")));
        }
        let c = self.container_mut();
        match instr.as_str() {
            "CMD" => c.cmd = Some(exec_or_shell(rest, c.shell.as_deref())?),
            "ENTRYPOINT" => c.entrypoint = Some(exec_or_shell(rest, c.shell.as_deref())?),
            "ENV" => {
                let env = c.env.get_or_insert_with(Vec::new);
                for (k, v) in key_values(rest).map_err(&bad)? {
                    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) != k);
                    env.push(format!("{k}={v}"));
                }
            }
            "LABEL" => {
                let labels = c.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in key_values(rest).map_err(&bad)? {
                    labels.insert(k, v);
                }
            }
            "EXPOSE" => {
                let ports = c.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in rest.split_whitespace() {
                    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    let valid_num =
                        !num.is_empty() && num.split('-').all(|n| n.parse::<u16>().is_ok());
                    if !valid_num || !["tcp", "udp", "sctp"].contains(&proto) {
                        return Err(bad(&format!("invalid port `{p}`")));
                    }
                    ports.insert(format!("{num}/{proto}"), Empty {});
                }
            }
            "VOLUME" => {
                let vols = c.volumes.get_or_insert_with(BTreeMap::new);
                let list = if rest.starts_with('[') {
                    serde_json::from_str::<Vec<String>>(rest)
                        .map_err(|_| bad("VOLUME expects a JSON array of strings or paths"))?
                } else {
                    rest.split_whitespace().map(str::to_owned).collect()
                };
                for v in list {
                    vols.insert(v, Empty {});
                }
            }
            "WORKDIR" => c.working_dir = Some(unquote(rest)),
            "USER" => c.user = Some(unquote(rest)),
            "STOPSIGNAL" => c.stop_signal = Some(unquote(rest)),
            "ONBUILD" => c
                .on_build
                .get_or_insert_with(Vec::new)
                .push(rest.to_owned()),
            _ => {
                return Err(bad(&format!(
                    "{instr} cannot be changed on import (use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR)"
                )));
            }
        }
        Ok(())
    }
}

fn exec_or_shell(rest: &str, shell: Option<&[String]>) -> Result<Vec<String>> {
    if rest.starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<String>>(rest)
    {
        return Ok(v);
    }
    let mut argv: Vec<String> = shell.map_or_else(
        || vec!["/bin/sh".to_owned(), "-c".to_owned()],
        <[String]>::to_vec,
    );
    argv.push(rest.to_owned());
    Ok(argv)
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        s[1..s.len() - 1].to_owned()
    } else {
        s.to_owned()
    }
}

/// `K=V K2="v 2"` or the legacy single `K V…` form.
fn key_values(rest: &str) -> std::result::Result<Vec<(String, String)>, &'static str> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or("expected KEY=VALUE or KEY VALUE")?;
        return Ok(vec![(k.to_owned(), unquote(v))]);
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => {
                    chars.next();
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                    continue;
                }
                (_, c) => word.push(c),
            }
            chars.next();
        }
        if quote.is_some() {
            return Err("unterminated quote");
        }
        let (k, v) = word.split_once('=').ok_or("expected KEY=VALUE")?;
        if k.is_empty() {
            return Err("empty key");
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_like_docker_import() {
        let mut c = ImageConfig::default();
        c.apply_change(r#"CMD ["sh"]"#).unwrap();
        c.apply_change("ENTRYPOINT echo hi").unwrap();
        c.apply_change(r#"ENV A=1 B="two words""#).unwrap();
        c.apply_change("ENV A 3").unwrap();
        c.apply_change("EXPOSE 80 53/udp").unwrap();
        c.apply_change("LABEL k=v").unwrap();
        c.apply_change(r#"VOLUME ["/data"]"#).unwrap();
        c.apply_change("WORKDIR /srv").unwrap();
        c.apply_change("user nobody").unwrap();
        let cc = c.config.as_ref().unwrap();
        assert_eq!(cc.cmd.as_deref().unwrap(), ["sh"]);
        assert_eq!(
            cc.entrypoint.as_deref().unwrap(),
            ["/bin/sh", "-c", "echo hi"]
        );
        assert_eq!(cc.env.as_deref().unwrap(), ["B=two words", "A=3"]);
        assert!(cc.exposed_ports.as_ref().unwrap().contains_key("53/udp"));
        assert_eq!(cc.user.as_deref(), Some("nobody"));
        for bad in ["RUN true", "CMD", "EXPOSE eighty", "ENV A=\"x"] {
            assert!(c.apply_change(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_fields_survive_and_bytes_are_stable() {
        let src = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Foo":1},"rootfs":{"type":"layers","diff_ids":[]},"docker_version":"x"}"#;
        let c = ImageConfig::from_slice(src).unwrap();
        let (bytes, _) = c.to_bytes();
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back["docker_version"], "x");
        assert_eq!(back["config"]["Foo"], 1);
        assert_eq!(
            c.to_bytes().0,
            ImageConfig::from_slice(&bytes).unwrap().to_bytes().0
        );
    }

    // regression: skopeo re-encodes a config it converts; a `created` with
    // trailing zeros in its nanoseconds came back shorter, with another id.
    #[test]
    fn timestamps_are_written_like_go_rfc3339nano() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = |s: u64, n: u32| timestamp(UNIX_EPOCH + Duration::new(s, n));
        assert_eq!(
            at(1_700_000_000, 30_878_170),
            "2023-11-14T22:13:20.03087817Z"
        );
        assert_eq!(at(1_700_000_000, 500_000_000), "2023-11-14T22:13:20.5Z");
        assert_eq!(at(1_700_000_000, 0), "2023-11-14T22:13:20Z");
        assert_eq!(at(1_700_000_000, 1), "2023-11-14T22:13:20.000000001Z");
        assert_eq!(at(0, 0), "1970-01-01T00:00:00Z");
    }
}
