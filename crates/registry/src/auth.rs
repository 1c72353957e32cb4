//! `WWW-Authenticate` challenges and the credentials answering them.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// What a user authenticates with. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or a personal access token as password).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// An OAuth2 refresh token ("identity token") from an earlier login.
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

impl Credential {
    /// A user name and password.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The value of an `Authorization: Basic …` header, for basic
    /// credentials.
    pub(crate) fn basic_header(&self) -> Option<String> {
        match self {
            Self::Basic { username, password } => Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{username}:{password}"))
            )),
            Self::IdentityToken(_) => None,
        }
    }
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer` or `basic` (lowercased).
    pub scheme: String,
    /// Parameters (`realm`, `service`, `scope`, …), keys lowercased.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter by (lowercase) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parse a `WWW-Authenticate` header value into its challenges
/// (RFC 7235: `scheme param=value, param="quoted \" value", other-scheme …`).
/// Malformed parts are skipped, never a panic.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let bytes = header.as_bytes();
    let mut pos = 0;
    let skip_ws = |pos: &mut usize| {
        while *pos < bytes.len()
            && (bytes[*pos] == b' ' || bytes[*pos] == b'\t' || bytes[*pos] == b',')
        {
            *pos += 1;
        }
    };
    let token = |pos: &mut usize| -> String {
        let start = *pos;
        while *pos < bytes.len() && !matches!(bytes[*pos], b' ' | b'\t' | b',' | b'=' | b'"') {
            *pos += 1;
        }
        header[start..*pos].to_owned()
    };
    loop {
        skip_ws(&mut pos);
        if pos >= bytes.len() {
            break;
        }
        let word = token(&mut pos);
        if word.is_empty() {
            // A stray quote or '=': skip one byte and go on.
            pos += 1;
            continue;
        }
        // `word=` is a parameter of the current challenge; otherwise `word`
        // starts a new challenge.
        let mut look = pos;
        while look < bytes.len() && (bytes[look] == b' ' || bytes[look] == b'\t') {
            look += 1;
        }
        if look < bytes.len() && bytes[look] == b'=' && !out.is_empty() {
            pos = look + 1;
            while pos < bytes.len() && (bytes[pos] == b' ' || bytes[pos] == b'\t') {
                pos += 1;
            }
            let value = if pos < bytes.len() && bytes[pos] == b'"' {
                pos += 1;
                let mut v = String::new();
                let mut chars = header[pos..].char_indices();
                let mut end = header.len();
                while let Some((k, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                v.push(n);
                            }
                        }
                        '"' => {
                            end = pos + k + 1;
                            break;
                        }
                        c => v.push(c),
                    }
                }
                pos = end;
                v
            } else {
                token(&mut pos)
            };
            if let Some(last) = out.last_mut() {
                last.params.insert(word.to_ascii_lowercase(), value);
            }
        } else {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_quoted_params() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example/token"));
        assert_eq!(c[0].param("service"), Some("registry.example"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
    }

    #[test]
    fn several_challenges_unquoted_and_escaped() {
        let c = parse_www_authenticate(
            r#"Basic realm="basic-realm", Bearer realm=http://127.0.0.1:1/t , error="a \"b\"""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("basic-realm"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("http://127.0.0.1:1/t"));
        assert_eq!(c[1].param("error"), Some("a \"b\""));
    }

    #[test]
    fn garbage_never_panics() {
        for h in [
            "",
            "=",
            "\"",
            "Bearer realm=\"unterminated",
            "Bearer ==,,\"\"",
            "é=ü",
        ] {
            let _ = parse_www_authenticate(h);
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = Credential::basic("me", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        let t = Credential::IdentityToken("tok-secret".into());
        assert!(!format!("{t:?}").contains("tok-secret"));
    }
}
