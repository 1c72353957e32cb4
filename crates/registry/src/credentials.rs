//! docker-compatible credentials: `config.json` in `$DOCKER_CONFIG` (else
//! `~/.docker`), its `auths` entries, and `credHelpers`/`credsStore` that
//! call `docker-credential-NAME get|store|erase`. A `docker login` works for
//! kiln and a `kiln login` for docker.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::auth::Credential;
use crate::error::{RegistryError, Result};

/// The key docker uses for Docker Hub in `auths` and for helpers.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The credentials file (`config.json`) of a docker configuration directory.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    json: Map<String, Value>,
}

/// The configuration directory: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn default_config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
    home.join(".docker")
}

/// The key a registry host has in `auths` and for credential helpers.
pub fn config_key(host: &str) -> String {
    if host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io" {
        DOCKER_HUB_KEY.to_owned()
    } else {
        host.to_owned()
    }
}

/// docker's `ConvertToHostname`: `https://host:5000/v1/` → `host:5000`.
fn hostname_of(key: &str) -> &str {
    let s = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    s.split('/').next().unwrap_or(s)
}

impl DockerConfig {
    /// Read `DIR/config.json` (an absent file is an empty configuration).
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let json = match fs_err::read(&path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => m,
                Ok(_) => {
                    return Err(RegistryError::Credentials(format!(
                        "{} is not a JSON object",
                        path.display()
                    )));
                }
                Err(e) => {
                    return Err(RegistryError::Credentials(format!(
                        "{} is not valid JSON: {e}",
                        path.display()
                    )));
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(RegistryError::io("read", &path, e)),
        };
        Ok(Self { path, json })
    }

    /// The file this configuration is read from and written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credential helper for `host`, if one is configured
    /// (`credHelpers[host]`, else `credsStore`).
    pub fn helper_for(&self, host: &str) -> Option<String> {
        let key = config_key(host);
        self.json
            .get("credHelpers")
            .and_then(|h| h.get(&key).or_else(|| h.get(host)))
            .and_then(Value::as_str)
            .or_else(|| self.json.get("credsStore").and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    /// The credentials for a registry host, if any.
    pub fn get(&self, host: &str) -> Result<Option<Credential>> {
        let key = config_key(host);
        if let Some(helper) = self.helper_for(host) {
            return helper_get(&helper, &key);
        }
        let Some(auths) = self.json.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        let entry = auths.get(&key).or_else(|| {
            auths
                .iter()
                .find(|(k, _)| hostname_of(k) == hostname_of(&key))
                .map(|(_, v)| v)
        });
        let Some(entry) = entry else {
            return Ok(None);
        };
        if let Some(tok) = entry
            .get("identitytoken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            return Ok(Some(Credential::IdentityToken(tok.to_owned())));
        }
        if let Some(auth) = entry
            .get("auth")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            let decoded = STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    RegistryError::Credentials(format!(
                        "the `auth` entry for {key} in {} is not base64 of `user:password`",
                        self.path.display()
                    ))
                })?;
            let Some((user, pass)) = decoded.split_once(':') else {
                return Err(RegistryError::Credentials(format!(
                    "the `auth` entry for {key} in {} has no `:` between user and password",
                    self.path.display()
                )));
            };
            return Ok(Some(Credential::basic(user, pass)));
        }
        match (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            (Some(u), Some(p)) => Ok(Some(Credential::basic(u, p))),
            _ => Ok(None),
        }
    }

    /// Save credentials for `host`: through its credential helper when one is
    /// configured (the file then keeps only an empty `auths` entry, as
    /// docker does), else base64 in `auths`. The file is replaced atomically
    /// and readable only by its owner.
    pub fn store(&mut self, host: &str, cred: &Credential) -> Result<()> {
        let key = config_key(host);
        let auths = self
            .json
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        let entry = if let Some(helper) = self.helper_for(host) {
            let (user, secret) = match cred {
                Credential::Basic { username, password } => (username.as_str(), password.as_str()),
                Credential::IdentityToken(t) => ("<token>", t.as_str()),
            };
            let input = json!({"ServerURL": key, "Username": user, "Secret": secret}).to_string();
            run_helper(&helper, "store", &input)?;
            json!({})
        } else {
            match cred {
                Credential::Basic { username, password } => {
                    json!({"auth": STANDARD.encode(format!("{username}:{password}"))})
                }
                Credential::IdentityToken(t) => json!({"identitytoken": t}),
            }
        };
        if let Some(m) = self.json.get_mut("auths").and_then(Value::as_object_mut) {
            m.insert(key, entry);
        }
        self.save()
    }

    /// Forget the credentials of `host` (in its helper and in `auths`).
    /// Returns whether there was anything to forget.
    pub fn erase(&mut self, host: &str) -> Result<bool> {
        let key = config_key(host);
        let mut found = false;
        if let Some(helper) = self.helper_for(host) {
            found |= helper_get(&helper, &key)?.is_some();
            if found {
                run_helper(&helper, "erase", &key)?;
            }
        }
        if let Some(m) = self.json.get_mut("auths").and_then(Value::as_object_mut) {
            let keys: Vec<String> = m
                .keys()
                .filter(|k| *k == &key || hostname_of(k) == hostname_of(&key))
                .cloned()
                .collect();
            for k in keys {
                m.remove(&k);
                found = true;
            }
        }
        if found {
            self.save()?;
        }
        Ok(found)
    }

    fn save(&self) -> Result<()> {
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        fs_err::create_dir_all(dir).map_err(|e| RegistryError::io("create directory", dir, e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".config.json-")
            .tempfile_in(dir)
            .map_err(|e| RegistryError::io("create temp file in", dir, e))?;
        let text = serde_json::to_string_pretty(&Value::Object(self.json.clone()))
            .unwrap_or_else(|_| "{}".to_owned());
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.write_all(b"\n"))
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| RegistryError::io("write", tmp.path().to_path_buf(), e))?;
        // tempfile creates the file 0600: secrets stay private.
        tmp.persist(&self.path)
            .map_err(|e| RegistryError::io("replace", &self.path, e.error))?;
        Ok(())
    }
}

fn helper_get(helper: &str, key: &str) -> Result<Option<Credential>> {
    let out = match run_helper(helper, "get", key) {
        Ok(out) => out,
        // The helper's way of saying "none stored".
        Err(RegistryError::Credentials(msg)) if msg.contains("credentials not found") => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let v: Value = serde_json::from_str(&out).map_err(|e| {
        RegistryError::Credentials(format!(
            "docker-credential-{helper} get printed invalid JSON: {e}"
        ))
    })?;
    let user = v["Username"].as_str().unwrap_or_default();
    let secret = v["Secret"].as_str().unwrap_or_default();
    if secret.is_empty() {
        return Ok(None);
    }
    if user == "<token>" {
        Ok(Some(Credential::IdentityToken(secret.to_owned())))
    } else {
        Ok(Some(Credential::basic(user, secret)))
    }
}

/// Run `docker-credential-HELPER VERB` with `input` on stdin; stdout back.
fn run_helper(helper: &str, verb: &str, input: &str) -> Result<String> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            RegistryError::Credentials(format!(
                "cannot run credential helper {program} (configured in config.json): {e}"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading gives EPIPE; its status says more.
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| {
        RegistryError::Credentials(format!("credential helper {program} failed: {e}"))
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        // Helpers print their error on stdout (docker-credential-helpers);
        // neither stream carries the secret on failure.
        let msg = if stdout.trim().is_empty() {
            String::from_utf8_lossy(&out.stderr).trim().to_owned()
        } else {
            stdout.trim().to_owned()
        };
        return Err(RegistryError::Credentials(format!(
            "{program} {verb}: {msg}"
        )));
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auths_entry_round_trip_and_docker_hub_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = DockerConfig::load(dir.path()).unwrap();
        assert_eq!(c.get("127.0.0.1:5000").unwrap(), None);
        c.store("127.0.0.1:5000", &Credential::basic("u", "p:w"))
            .unwrap();
        c.store("docker.io", &Credential::basic("hub", "x"))
            .unwrap();
        let text = fs_err::read_to_string(dir.path().join("config.json")).unwrap();
        assert!(text.contains(DOCKER_HUB_KEY), "{text}");
        assert!(
            !text.contains("p:w"),
            "secrets are base64, as docker writes them"
        );
        let c = DockerConfig::load(dir.path()).unwrap();
        assert_eq!(
            c.get("127.0.0.1:5000").unwrap(),
            Some(Credential::basic("u", "p:w"))
        );
        assert_eq!(
            c.get("docker.io").unwrap(),
            Some(Credential::basic("hub", "x"))
        );
        let mut c = c;
        assert!(c.erase("127.0.0.1:5000").unwrap());
        assert!(!c.erase("127.0.0.1:5000").unwrap());
        assert_eq!(c.get("127.0.0.1:5000").unwrap(), None);
    }

    #[test]
    fn docker_written_entries_with_scheme_are_found() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(
            dir.path().join("config.json"),
            r#"{"auths":{"https://reg.example:5000/v1/":{"auth":"YTpi"},"tok.example":{"identitytoken":"T"}}}"#,
        )
        .unwrap();
        let c = DockerConfig::load(dir.path()).unwrap();
        assert_eq!(
            c.get("reg.example:5000").unwrap(),
            Some(Credential::basic("a", "b"))
        );
        assert_eq!(
            c.get("tok.example").unwrap(),
            Some(Credential::IdentityToken("T".into()))
        );
    }

    #[test]
    fn bad_auth_field_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(
            dir.path().join("config.json"),
            r#"{"auths":{"r.example":{"auth":"!!!"}}}"#,
        )
        .unwrap();
        let e = DockerConfig::load(dir.path())
            .unwrap()
            .get("r.example")
            .unwrap_err()
            .to_string();
        assert!(e.contains("r.example") && e.contains("base64"), "{e}");
    }
}
