//! The Bearer token flow, retries and schema 1, against a small fake
//! registry with its own token endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine;
use kiln_oci::{Digest, Reference, media};
use kiln_registry::{ClientOptions, Credential, Platform, Registry, RegistryError};

use crate::fake::{FakeServer, Request, Response};
use crate::support::{DirSink, make_image, noise, opts, rt};

/// A fake registry serving one image at `repo:1`, wanting Bearer tokens
/// from its own `/token` endpoint; with `user`, the endpoint wants Basic
/// credentials.
fn token_registry(
    user: Option<(&'static str, &'static str)>,
) -> (FakeServer, DirSink, Vec<u8>, Arc<AtomicU32>) {
    let src = DirSink {
        dir: tempfile::tempdir().unwrap(),
    };
    let image = make_image(&src, "amd64", &[noise(50, 4000), noise(51, 5000)]);
    let mut content: HashMap<String, (String, Vec<u8>)> = HashMap::new();
    content.insert(
        "/v2/repo/manifests/1".into(),
        (media::MANIFEST.into(), image.manifest.clone()),
    );
    for b in &image.blobs {
        content.insert(
            format!("/v2/repo/blobs/{}", b.digest),
            (
                "application/octet-stream".into(),
                src.get(&b.digest).unwrap(),
            ),
        );
    }
    let tokens = Arc::new(AtomicU32::new(0));
    let t2 = tokens.clone();
    let port = Arc::new(std::sync::OnceLock::<u16>::new());
    let p2 = port.clone();
    let server = FakeServer::start(move |req: &Request| {
        let realm = format!("http://127.0.0.1:{}/token", p2.get().copied().unwrap_or(0));
        if req.path() == "/token" {
            if let Some((u, p)) = user {
                let want = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                );
                if req.header("authorization") != Some(want.as_str()) {
                    return Response::new(401)
                        .body(r#"{"details":"incorrect username or password"}"#);
                }
            }
            t2.fetch_add(1, Ordering::SeqCst);
            let scope = req
                .target
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("scope="))
                .unwrap_or("")
                .to_owned();
            return Response::new(200)
                .header("Content-Type", "application/json")
                .body(format!(r#"{{"token":"tok-{scope}","expires_in":300}}"#));
        }
        let challenge = format!(
            r#"Bearer realm="{realm}",service="fake-registry",scope="repository:repo:pull""#
        );
        if req.header("authorization") != Some("Bearer tok-repository%3Arepo%3Apull") {
            return Response::new(401)
                .header("WWW-Authenticate", &challenge)
                .body(r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#);
        }
        match content.get(req.path()) {
            Some((ct, body)) => Response::new(200)
                .header("Content-Type", ct)
                .header("Docker-Content-Digest", Digest::sha256_of(body).as_str())
                .body(body.clone()),
            None => Response::new(404).body(r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#),
        }
    });
    port.set(server.port).unwrap();
    (server, src, image.manifest, tokens)
}

#[test]
fn bearer_token_flow_anonymous_with_one_token_per_scope() {
    let (server, src, manifest, tokens) = token_registry(None);
    let r: Reference = format!("{}/repo:1", server.host()).parse().unwrap();
    rt().block_on(async {
        let client = Registry::new(r.domain(), opts()).unwrap();
        let sink = DirSink::new();
        let pulled = client
            .pull(
                &r,
                &Platform::host(),
                sink.clone(),
                &kiln_registry::no_progress(),
            )
            .await
            .unwrap();
        assert_eq!(pulled.manifest.digest, Digest::sha256_of(&manifest));
        for l in &pulled.layers {
            assert_eq!(sink.get(&l.digest), src.get(&l.digest));
        }
    });
    // Manifest + config + 2 layers, one scope: one token, reused.
    assert_eq!(tokens.load(Ordering::SeqCst), 1);
    let reqs = server.requests();
    let token_req = reqs.iter().find(|r| r.path() == "/token").unwrap();
    assert!(
        token_req.target.contains("service=fake-registry"),
        "{}",
        token_req.target
    );
    assert!(
        token_req.target.contains("scope=repository%3Arepo%3Apull"),
        "{}",
        token_req.target
    );
    assert!(token_req.header("authorization").is_none(), "anonymous");
}

#[test]
fn bearer_token_flow_with_basic_credentials_at_the_token_endpoint() {
    let (server, _src, _manifest, tokens) = token_registry(Some(("kiln", "pw")));
    let r: Reference = format!("{}/repo:1", server.host()).parse().unwrap();
    rt().block_on(async {
        let client = Registry::new(
            r.domain(),
            ClientOptions {
                credential: Some(Credential::basic("kiln", "pw")),
                ..opts()
            },
        )
        .unwrap();
        client
            .pull(
                &r,
                &Platform::host(),
                DirSink::new(),
                &kiln_registry::no_progress(),
            )
            .await
            .unwrap();
        assert_eq!(tokens.load(Ordering::SeqCst), 1);

        // Wrong password: the token endpoint says 401, reported as such.
        let bad = Registry::new(
            r.domain(),
            ClientOptions {
                credential: Some(Credential::basic("kiln", "nope")),
                ..opts()
            },
        )
        .unwrap();
        let err = bad
            .pull(
                &r,
                &Platform::host(),
                DirSink::new(),
                &kiln_registry::no_progress(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RegistryError::Unauthorized {
                    had_credentials: true,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("repo"), "{err}");
    });
}

#[test]
fn retries_5xx_and_429_honouring_retry_after() {
    let hits = Arc::new(AtomicU32::new(0));
    let h2 = hits.clone();
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#.to_vec();
    let b2 = body.clone();
    let server = FakeServer::start(move |req| {
        if req.path() == "/v2/" {
            return Response::new(200);
        }
        match h2.fetch_add(1, Ordering::SeqCst) {
            0 => Response::new(503),
            1 => Response::new(429).header("Retry-After", "0"),
            _ => Response::new(200)
                .header("Content-Type", media::MANIFEST)
                .body(b2.clone()),
        }
    });
    rt().block_on(async {
        let client = Registry::new(
            &server.host(),
            ClientOptions {
                attempts: 3,
                ..opts()
            },
        )
        .unwrap();
        let m = client.fetch_manifest("x", "1").await.unwrap();
        assert_eq!(m.bytes, body);
    });
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // Out of attempts: the 503 is reported with the registry's name.
    let server = FakeServer::start(|req| {
        if req.path() == "/v2/" {
            Response::new(200)
        } else {
            Response::new(503).body("overloaded")
        }
    });
    let err = rt().block_on(async {
        Registry::new(&server.host(), opts())
            .unwrap()
            .fetch_manifest("x", "1")
            .await
            .unwrap_err()
    });
    let msg = err.to_string();
    assert!(
        msg.contains("503") && msg.contains(&server.host()) && msg.contains("overloaded"),
        "{msg}"
    );
}

#[test]
fn schema1_manifests_are_refused_clearly() {
    let server = FakeServer::start(|req| {
        if req.path() == "/v2/" {
            return Response::new(200);
        }
        Response::new(200)
            .header(
                "Content-Type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            )
            .body(r#"{"schemaVersion":1,"name":"old","tag":"1","fsLayers":[],"history":[]}"#)
    });
    let r: Reference = format!("{}/old:1", server.host()).parse().unwrap();
    let err = rt().block_on(async {
        Registry::new(r.domain(), opts())
            .unwrap()
            .pull(
                &r,
                &Platform::host(),
                DirSink::new(),
                &kiln_registry::no_progress(),
            )
            .await
            .unwrap_err()
    });
    assert!(matches!(err, RegistryError::Schema1 { .. }), "{err}");
    assert!(err.to_string().contains("schema 1"), "{err}");
}

#[test]
fn manifest_with_wrong_digest_header_is_refused() {
    let server = FakeServer::start(|req| {
        if req.path() == "/v2/" {
            return Response::new(200);
        }
        Response::new(200)
            .header("Content-Type", media::MANIFEST)
            .header("Docker-Content-Digest", Digest::sha256_of(b"other").as_str())
            .body(r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#)
    });
    let err = rt().block_on(async {
        Registry::new(&server.host(), opts())
            .unwrap()
            .fetch_manifest("x", "1")
            .await
            .unwrap_err()
    });
    assert!(matches!(err, RegistryError::Verify { .. }), "{err}");
}
