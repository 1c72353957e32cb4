//! The transport: one [`Registry`] per registry host — scheme selection
//! (HTTPS, plain HTTP only for insecure hosts), TLS roots from `certs.d`,
//! authentication (Bearer tokens cached per scope, Basic), and retries.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};
use tokio::sync::OnceCell;

use crate::auth::{Challenge, Credential, parse_www_authenticate};
use crate::error::{RegistryError, Result, chain};
use crate::events::{Event, Progress};

/// How to reach registries. `Default` is docker's behaviour with no
/// configuration: HTTPS everywhere except loopback, system TLS roots,
/// 5 attempts per request.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Hosts (`host` or `host:port`) that may be reached over plain HTTP
    /// and whose TLS certificates are not verified (docker's
    /// `--insecure-registry`). Loopback hosts are always insecure.
    pub insecure: Vec<String>,
    /// Directories holding one `HOST[:PORT]/` directory per registry with
    /// `*.crt` CA certificates and `*.cert`/`*.key` client certificates
    /// (kiln's `ROOT/certs.d`, docker's `/etc/docker/certs.d`).
    pub certs_dirs: Vec<PathBuf>,
    /// Credentials to offer; `None` pulls anonymously.
    pub credential: Option<Credential>,
    /// Attempts per request on connection errors, 5xx and 429 (≥ 1).
    pub attempts: u32,
    /// First back-off delay; doubled each attempt (capped at 10 s unless a
    /// `Retry-After` asks for more, up to 60 s).
    pub backoff: Duration,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed between two reads of a response (a stalled transfer).
    pub read_timeout: Duration,
    /// Layers downloaded or uploaded at once.
    pub max_concurrent: usize,
    /// Upload blobs in chunks of this many bytes (PATCH per chunk) instead
    /// of one PUT; `None` uploads monolithically.
    pub chunk_size: Option<u64>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            certs_dirs: Vec::new(),
            credential: None,
            attempts: 5,
            backoff: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            max_concurrent: 3,
            chunk_size: None,
        }
    }
}

/// Whether docker would talk plain HTTP to `host` (`host:port`): loopback
/// names and addresses, and the hosts listed as insecure.
pub fn is_insecure(host: &str, insecure: &[String]) -> bool {
    let name = strip_port(host);
    if name == "localhost" || name == "::1" || name == "[::1]" {
        return true;
    }
    if let Ok(ip) = name.parse::<Ipv4Addr>()
        && ip.is_loopback()
    {
        return true;
    }
    insecure.iter().any(|i| {
        let i = i
            .trim()
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        i == host || i == name
    })
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..=h.len()]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    /// scope set (space-joined, sorted) → token and when it expires.
    tokens: HashMap<String, (String, Instant)>,
}

struct Inner {
    host: String,
    /// Where the API is (Docker Hub's differs from its name).
    api_host: String,
    http: reqwest::Client,
    insecure: bool,
    base: OnceCell<String>,
    opts: ClientOptions,
    auth: Mutex<AuthState>,
}

/// A client for one registry host. Cheap to clone (shared state: the
/// connection pool and the token cache).
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.inner.host)
            .field("insecure", &self.inner.insecure)
            .finish_non_exhaustive()
    }
}

/// What a request is about, for error messages and token scopes.
pub(crate) struct Op<'a> {
    /// `pull manifest latest`, `upload blob sha256:…`.
    pub what: String,
    /// The repository, when the request is about one.
    pub repository: Option<&'a str>,
    /// Token scopes (`repository:a/b:pull`).
    pub scopes: Vec<String>,
}

impl Registry {
    /// A client for `host` (`registry.example`, `127.0.0.1:5000`). Reads the
    /// certificates for this host from `opts.certs_dirs`; makes no request.
    pub fn new(host: &str, opts: ClientOptions) -> Result<Self> {
        let insecure = is_insecure(host, &opts.insecure);
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.read_timeout)
            .danger_accept_invalid_certs(insecure);
        for dir in &opts.certs_dirs {
            let dir = dir.join(host);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            names.sort();
            for path in names {
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                let tls = |reason: String| RegistryError::Tls {
                    registry: host.to_owned(),
                    reason: format!("{}: {reason}", path.display()),
                };
                match ext {
                    "crt" => {
                        let pem =
                            fs_err::read(&path).map_err(|e| RegistryError::io("read", &path, e))?;
                        let certs = reqwest::Certificate::from_pem_bundle(&pem)
                            .map_err(|e| tls(chain(&e)))?;
                        if certs.is_empty() {
                            return Err(tls("no PEM certificate in the file".into()));
                        }
                        for c in certs {
                            b = b.add_root_certificate(c);
                        }
                    }
                    "cert" => {
                        let key = path.with_extension("key");
                        let mut pem =
                            fs_err::read(&path).map_err(|e| RegistryError::io("read", &path, e))?;
                        let key_pem = fs_err::read(&key)
                            .map_err(|e| RegistryError::io("read the client key for", &key, e))?;
                        pem.push(b'\n');
                        pem.extend_from_slice(&key_pem);
                        let id = reqwest::Identity::from_pem(&pem).map_err(|e| tls(chain(&e)))?;
                        b = b.identity(id);
                    }
                    _ => {}
                }
            }
        }
        let http = b.build().map_err(|e| RegistryError::Tls {
            registry: host.to_owned(),
            reason: chain(&e),
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                host: host.to_owned(),
                api_host: match host {
                    "docker.io" | "index.docker.io" => "registry-1.docker.io".to_owned(),
                    h => h.to_owned(),
                },
                http,
                insecure,
                base: OnceCell::new(),
                opts,
                auth: Mutex::new(AuthState::default()),
            }),
        })
    }

    /// The registry host this client talks to.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    pub(crate) fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// `https://host` or (insecure hosts that do not speak TLS) `http://host`;
    /// found by pinging `/v2/` once, which also learns the auth challenge.
    pub(crate) async fn base(&self) -> Result<&str> {
        self.inner
            .base
            .get_or_try_init(|| async {
                let https = format!("https://{}", self.inner.api_host);
                if self.inner.insecure {
                    match self.ping(&https, 1).await {
                        Ok(()) => return Ok(https),
                        Err(RegistryError::Connect { .. }) => {
                            let http = format!("http://{}", self.inner.api_host);
                            self.ping(&http, self.inner.opts.attempts).await?;
                            return Ok(http);
                        }
                        Err(e) => return Err(e),
                    }
                }
                self.ping(&https, self.inner.opts.attempts).await?;
                Ok(https)
            })
            .await
            .map(String::as_str)
    }

    async fn ping(&self, base: &str, attempts: u32) -> Result<()> {
        let url = format!("{base}/v2/");
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.inner.http.get(&url).send().await {
                Ok(resp) => {
                    if resp.status() == StatusCode::UNAUTHORIZED {
                        self.learn_challenge(resp.headers());
                    } else if should_retry(resp.status()) && attempt < attempts {
                        tokio::time::sleep(self.delay(attempt, resp.headers())).await;
                        continue;
                    }
                    // Anything else (200, 404 of a v2 proxy…) still tells us the
                    // scheme works; requests will report real errors.
                    return Ok(());
                }
                Err(e) if attempt < attempts && retryable(&e) => {
                    tokio::time::sleep(self.delay(attempt, &HeaderMap::new())).await;
                }
                Err(e) => {
                    return Err(RegistryError::Connect {
                        registry: self.inner.host.clone(),
                        reason: chain(&e),
                    });
                }
            }
        }
    }

    fn learn_challenge(&self, headers: &HeaderMap) {
        let challenges: Vec<Challenge> = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_www_authenticate)
            .collect();
        // Prefer Bearer (docker does): it scopes access.
        let pick = challenges
            .iter()
            .find(|c| c.scheme == "bearer")
            .or_else(|| challenges.iter().find(|c| c.scheme == "basic"))
            .cloned();
        if let Some(c) = pick
            && let Ok(mut st) = self.inner.auth.lock()
        {
            st.challenge = Some(c);
        }
    }

    fn delay(&self, attempt: u32, headers: &HeaderMap) -> Duration {
        if let Some(d) = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
        {
            return d.min(Duration::from_secs(60));
        }
        let base = self.inner.opts.backoff;
        base.saturating_mul(1 << attempt.saturating_sub(1).min(6))
            .min(Duration::from_secs(10))
    }

    /// The `Authorization` header for a request with these scopes, fetching
    /// a token when the registry wants Bearer auth.
    async fn authorization(&self, op: &Op<'_>) -> Result<Option<String>> {
        let challenge = self
            .inner
            .auth
            .lock()
            .ok()
            .and_then(|st| st.challenge.clone());
        let Some(ch) = challenge else {
            return Ok(None);
        };
        match ch.scheme.as_str() {
            "basic" => Ok(self
                .inner
                .opts
                .credential
                .as_ref()
                .and_then(Credential::basic_header)),
            "bearer" => self
                .token(&ch, op)
                .await
                .map(|t| Some(format!("Bearer {t}"))),
            _ => Ok(None),
        }
    }

    fn scope_key(scopes: &[String]) -> String {
        let mut s = scopes.to_vec();
        s.sort();
        s.dedup();
        s.join(" ")
    }

    async fn token(&self, ch: &Challenge, op: &Op<'_>) -> Result<String> {
        let key = Self::scope_key(&op.scopes);
        if let Ok(st) = self.inner.auth.lock()
            && let Some((tok, until)) = st.tokens.get(&key)
            && Instant::now() < *until
        {
            return Ok(tok.clone());
        }
        let realm = ch.param("realm").ok_or_else(|| RegistryError::Protocol {
            registry: self.inner.host.clone(),
            reason: "the Bearer challenge has no realm (token endpoint)".into(),
        })?;
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = ch.param("service") {
            query.push(("service", s));
        }
        for s in &op.scopes {
            query.push(("scope", s));
        }
        let cred = self.inner.opts.credential.as_ref();
        let req = match cred {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form: Vec<(&str, &str)> = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh),
                    ("client_id", "kiln"),
                ];
                let scope = op.scopes.join(" ");
                if let Some(s) = ch.param("service") {
                    form.push(("service", s));
                }
                if !scope.is_empty() {
                    form.push(("scope", &scope));
                }
                self.inner.http.post(realm).form(&form)
            }
            Some(Credential::Basic { username, password }) => {
                query.push(("account", username));
                self.inner
                    .http
                    .get(realm)
                    .query(&query)
                    .basic_auth(username, Some(password))
            }
            None => self.inner.http.get(realm).query(&query),
        };
        let resp = req.send().await.map_err(|e| RegistryError::Connect {
            registry: self.inner.host.clone(),
            reason: format!("token endpoint {realm}: {}", chain(&e)),
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: self.inner.host.clone(),
                repository: op.repository.map(str::to_owned),
                what: op.what.clone(),
                had_credentials: cred.is_some(),
            });
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(RegistryError::Status {
                registry: self.inner.host.clone(),
                what: format!("token request to {realm}"),
                status: status.as_u16(),
                body: truncate(&body),
            });
        }
        let v: serde_json::Value = resp.json().await.map_err(|e| RegistryError::Protocol {
            registry: self.inner.host.clone(),
            reason: format!(
                "token endpoint {realm} answered invalid JSON: {}",
                chain(&e)
            ),
        })?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Protocol {
                registry: self.inner.host.clone(),
                reason: format!("token endpoint {realm} answered no token"),
            })?
            .to_owned();
        // Docker's default lifetime is 60 s; renew a little early.
        let secs = v["expires_in"].as_u64().filter(|s| *s > 0).unwrap_or(60);
        let until = Instant::now() + Duration::from_secs(secs.saturating_sub(5).max(1));
        if let Ok(mut st) = self.inner.auth.lock() {
            st.tokens.insert(key, (token.clone(), until));
        }
        Ok(token)
    }

    /// Check that the configured credentials are accepted (`kiln login`):
    /// Basic registries must answer `/v2/` with 200, Bearer registries must
    /// hand out a token (without scope, as docker asks).
    pub async fn check_login(&self) -> Result<()> {
        let base = self.base().await?.to_owned();
        let op = Op {
            what: "login".into(),
            repository: None,
            scopes: Vec::new(),
        };
        let resp = self
            .send(&op, &mut |http| Ok(http.get(format!("{base}/v2/"))))
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(&op, resp).await)
        }
    }

    /// Send a request built by `build` (called again for each attempt):
    /// with authentication, re-authenticating once on 401, and retrying
    /// connection errors, 5xx and 429 with back-off. Returns the response of
    /// the last attempt (any status but 401; callers judge the status).
    pub(crate) async fn send(
        &self,
        op: &Op<'_>,
        build: &mut (dyn FnMut(&reqwest::Client) -> Result<RequestBuilder> + Send),
    ) -> Result<Response> {
        self.send_with_progress(op, build, None).await
    }

    pub(crate) async fn send_with_progress(
        &self,
        op: &Op<'_>,
        build: &mut (dyn FnMut(&reqwest::Client) -> Result<RequestBuilder> + Send),
        progress: Option<&Progress>,
    ) -> Result<Response> {
        self.base().await?;
        let attempts = self.inner.opts.attempts.max(1);
        let mut attempt = 0;
        let mut reauthed = false;
        loop {
            attempt += 1;
            let mut rb = build(&self.inner.http)?;
            if let Some(h) = self.authorization(op).await? {
                rb = rb.header(AUTHORIZATION, h);
            }
            let result = rb.send().await;
            let resp = match result {
                Ok(resp) => resp,
                Err(e) if attempt < attempts && retryable(&e) => {
                    let reason = chain(&e);
                    if let Some(p) = progress {
                        p(Event::Retry {
                            what: op.what.clone(),
                            attempt,
                            reason,
                        });
                    }
                    tokio::time::sleep(self.delay(attempt, &HeaderMap::new())).await;
                    continue;
                }
                Err(e) => {
                    return Err(RegistryError::Connect {
                        registry: self.inner.host.clone(),
                        reason: format!("{}: {}", op.what, chain(&e)),
                    });
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                // Once more with a fresh token (an expired one, or a challenge
                // learnt only now); a second 401 means the credentials or the
                // scope are refused.
                self.learn_challenge(resp.headers());
                if !reauthed {
                    reauthed = true;
                    if let Ok(mut st) = self.inner.auth.lock() {
                        st.tokens.remove(&Self::scope_key(&op.scopes));
                    }
                    attempt -= 1;
                    continue;
                }
                return Err(RegistryError::Unauthorized {
                    registry: self.inner.host.clone(),
                    repository: op.repository.map(str::to_owned),
                    what: op.what.clone(),
                    had_credentials: self.inner.opts.credential.is_some(),
                });
            }
            if should_retry(status) && attempt < attempts {
                if let Some(p) = progress {
                    p(Event::Retry {
                        what: op.what.clone(),
                        attempt,
                        reason: format!("HTTP {}", status.as_u16()),
                    });
                }
                tokio::time::sleep(self.delay(attempt, resp.headers())).await;
                continue;
            }
            return Ok(resp);
        }
    }

    /// The error for an unexpected status.
    pub(crate) async fn status_error(&self, op: &Op<'_>, resp: Response) -> RegistryError {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        match status {
            StatusCode::UNAUTHORIZED => RegistryError::Unauthorized {
                registry: self.inner.host.clone(),
                repository: op.repository.map(str::to_owned),
                what: op.what.clone(),
                had_credentials: self.inner.opts.credential.is_some(),
            },
            StatusCode::FORBIDDEN => RegistryError::Denied {
                registry: self.inner.host.clone(),
                repository: op.repository.map(str::to_owned),
                what: op.what.clone(),
            },
            StatusCode::NOT_FOUND if op.repository.is_some() => RegistryError::NotFound {
                registry: self.inner.host.clone(),
                repository: op.repository.unwrap_or_default().to_owned(),
                what: op.what.clone(),
            },
            _ => RegistryError::Status {
                registry: self.inner.host.clone(),
                what: op.what.clone(),
                status: status.as_u16(),
                body: truncate(&body),
            },
        }
    }
}

/// Connection errors are worth another attempt; a name that does not
/// resolve (a typo, no such host) or a bad request is not.
fn retryable(e: &reqwest::Error) -> bool {
    !e.is_builder() && !chain(e).contains("dns error")
}

fn should_retry(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// `Retry-After`: seconds, or an HTTP date.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let now = chrono::Utc::now();
    let ms = (when.with_timezone(&chrono::Utc) - now).num_milliseconds();
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn truncate(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_owned(),
    }
}

impl Registry {
    /// Waits for a set of parallel blob transfers (`what`: "download" or
    /// "upload") and sums the bytes they moved; the first failure aborts
    /// the others and is the result.
    pub(crate) async fn join_transfers(
        &self,
        mut tasks: tokio::task::JoinSet<Result<u64>>,
        what: &str,
    ) -> Result<u64> {
        let mut total = 0;
        let mut first_err = None;
        while let Some(res) = tasks.join_next().await {
            match res {
                Ok(Ok(n)) => total += n,
                Ok(Err(e)) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                        tasks.abort_all();
                    }
                }
                Err(e) if e.is_cancelled() => {}
                Err(e) => {
                    first_err.get_or_insert(RegistryError::Protocol {
                        registry: self.host().to_owned(),
                        reason: format!("{what} task failed: {e}"),
                    });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_rules() {
        let none: Vec<String> = Vec::new();
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.5.6.7",
            "[::1]:5000",
        ] {
            assert!(is_insecure(h, &none), "{h}");
        }
        for h in [
            "registry.example",
            "10.0.0.1:5000",
            "128.0.0.1",
            "localhost.example",
        ] {
            assert!(!is_insecure(h, &none), "{h}");
        }
        let list = vec!["reg.lan:5000".to_owned(), "http://other.lan/".to_owned()];
        assert!(is_insecure("reg.lan:5000", &list));
        assert!(!is_insecure("reg.lan:5001", &list));
        assert!(is_insecure("other.lan:443", &list));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
