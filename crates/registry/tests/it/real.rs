//! Against a real `docker-registry` on 127.0.0.1 (each test starts its own).

use std::sync::Arc;

use kiln_oci::{Digest, Reference, media};
use kiln_registry::{
    BlobSink, ClientOptions, Credential, Descriptor, Event, Platform, PushImage, Registry,
    RegistryError,
};
use kiln_test_support::registry::{RegistryConfig, TestRegistry};

use crate::support::{DirSink, Recorder, make_image, noise, opts, rt};

fn reference(reg: &TestRegistry, name: &str) -> Reference {
    format!("{}/{name}", reg.host()).parse().unwrap()
}

#[test]
fn push_then_pull_round_trip_without_auth_docker_registry() {
    let reg = TestRegistry::start();
    let src = DirSink::new();
    let image = make_image(&src, "amd64", &[noise(1, 300_000), noise(2, 5_000)]);
    let r = reference(&reg, "kiln/app:1");
    rt().block_on(async {
        let client = Registry::new(r.domain(), opts()).unwrap();
        let rec = Recorder::default();
        let pushed = client
            .push(&r, &image, src.clone(), &rec.progress())
            .await
            .unwrap();
        assert_eq!(pushed.digest, Digest::sha256_of(&image.manifest));
        assert_eq!(
            pushed.uploaded,
            image.blobs.iter().map(|b| b.size).sum::<u64>()
        );

        // A second push finds everything there (HEAD) and uploads nothing.
        let rec2 = Recorder::default();
        let again = client
            .push(&r, &image, src.clone(), &rec2.progress())
            .await
            .unwrap();
        assert_eq!(again.uploaded, 0);
        assert_eq!(
            crate::support::count(&rec2.events(), |e| matches!(e, Event::BlobExists { .. })),
            3
        );

        let sink = DirSink::new();
        let rec = Recorder::default();
        let pulled = client
            .pull(
                &r,
                &"linux/amd64".parse().unwrap(),
                sink.clone(),
                &rec.progress(),
            )
            .await
            .unwrap();
        assert_eq!(pulled.manifest.digest, pushed.digest);
        assert_eq!(pulled.layers.len(), 2);
        for b in &image.blobs {
            assert_eq!(sink.get(&b.digest), src.get(&b.digest), "blob {}", b.digest);
        }
        assert_eq!(sink.get(&pushed.digest).unwrap(), image.manifest);
        assert!(
            !sink.files().iter().any(|f| f.starts_with(".tmp")),
            "{:?}",
            sink.files()
        );

        // Pulled again: nothing downloaded (layers already present).
        let rec = Recorder::default();
        let again = client
            .pull(
                &r,
                &"linux/amd64".parse().unwrap(),
                sink.clone(),
                &rec.progress(),
            )
            .await
            .unwrap();
        assert_eq!(again.downloaded, 0);
        assert!(
            !rec.events()
                .iter()
                .any(|e| matches!(e, Event::BlobStart { .. }))
        );
    });
}

#[test]
fn chunked_upload_and_cross_repo_mount_docker_registry() {
    let reg = TestRegistry::start();
    let src = DirSink::new();
    let image = make_image(&src, "amd64", &[noise(3, 1_000_000)]);
    let a = reference(&reg, "team/a:v1");
    let b = reference(&reg, "team/b:v1");
    rt().block_on(async {
        let client = Registry::new(
            a.domain(),
            ClientOptions {
                chunk_size: Some(300_000),
                ..opts()
            },
        )
        .unwrap();
        client
            .push(&a, &image, src.clone(), &kiln_registry::no_progress())
            .await
            .unwrap();

        // The same blobs into another repository: mounted, not uploaded.
        let rec = Recorder::default();
        let img_b = PushImage {
            mount_from: vec!["team/a".to_owned()],
            ..image.clone()
        };
        let pushed = client
            .push(&b, &img_b, src.clone(), &rec.progress())
            .await
            .unwrap();
        assert_eq!(pushed.uploaded, 0);
        let mounted = crate::support::count(
            &rec.events(),
            |e| matches!(e, Event::BlobMounted { from, .. } if from == "team/a"),
        );
        assert_eq!(mounted, 2, "{:?}", rec.events());

        let sink = DirSink::new();
        let pulled = client
            .pull(
                &b,
                &Platform::host(),
                sink.clone(),
                &kiln_registry::no_progress(),
            )
            .await
            .unwrap();
        let layer = &pulled.layers[0];
        assert_eq!(sink.get(&layer.digest).unwrap(), noise(3, 1_000_000));
    });
}

#[test]
fn multi_platform_index_selection_docker_registry() {
    let reg = TestRegistry::start();
    let src = DirSink::new();
    let amd = make_image(&src, "amd64", &[noise(10, 1000)]);
    let arm = make_image(&src, "arm64", &[noise(11, 1000)]);
    let r = reference(&reg, "multi:latest");
    rt().block_on(async {
        let client = Registry::new(r.domain(), opts()).unwrap();
        let mut entries = Vec::new();
        for (img, arch, variant) in [(&amd, "amd64", None), (&arm, "arm64", Some("v8"))] {
            let d = Digest::sha256_of(&img.manifest);
            let by_digest = r.with_digest(d.clone());
            client.push(&by_digest, img, src.clone(), &kiln_registry::no_progress()).await.unwrap();
            let mut p = serde_json::json!({"os": "linux", "architecture": arch});
            if let Some(v) = variant {
                p["variant"] = serde_json::json!(v);
            }
            entries.push(serde_json::json!({"mediaType": media::MANIFEST, "digest": d, "size": img.manifest.len(), "platform": p}));
        }
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::INDEX, "manifests": entries
        }))
        .unwrap();
        let index_img = PushImage {
            manifest: index.clone(),
            media_type: media::INDEX.to_owned(),
            blobs: Vec::new(),
            mount_from: Vec::new(),
        };
        client.push(&r, &index_img, src.clone(), &kiln_registry::no_progress()).await.unwrap();

        for (platform, want) in [("linux/arm64", &arm), ("linux/amd64", &amd), ("linux/arm64/v8", &arm)] {
            let sink = DirSink::new();
            let rec = Recorder::default();
            let pulled = client
                .pull(&r, &platform.parse().unwrap(), sink.clone(), &rec.progress())
                .await
                .unwrap();
            assert_eq!(pulled.manifest.digest, Digest::sha256_of(&want.manifest), "{platform}");
            assert_eq!(pulled.index.as_ref().unwrap().digest, Digest::sha256_of(&index));
            assert!(sink.has_blob(&want.blobs[1].digest));
        }
        let err = client
            .pull(&r, &"linux/s390x".parse().unwrap(), DirSink::new(), &kiln_registry::no_progress())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RegistryError::NoMatchingPlatform { .. }), "{msg}");
        assert!(msg.contains("linux/s390x") && msg.contains("linux/amd64") && msg.contains("linux/arm64/v8"), "{msg}");
    });
}

#[test]
fn corrupted_blob_in_registry_storage_is_detected_docker_registry() {
    let reg = TestRegistry::start();
    let src = DirSink::new();
    let layer = noise(20, 200_000);
    let image = make_image(&src, "amd64", std::slice::from_ref(&layer));
    let r = reference(&reg, "corrupt:1");
    rt().block_on(async {
        let client = Registry::new(r.domain(), opts()).unwrap();
        client
            .push(&r, &image, src.clone(), &kiln_registry::no_progress())
            .await
            .unwrap();
    });
    // Same length, other bytes: only the digest check can notice.
    let d = Digest::sha256_of(&layer);
    let path = reg.blob_data_path(d.hex());
    let mut bad = layer.clone();
    bad[1000] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    rt().block_on(async {
        let client = Registry::new(r.domain(), opts()).unwrap();
        let sink = DirSink::new();
        let err = client
            .pull(
                &r,
                &Platform::host(),
                sink.clone(),
                &kiln_registry::no_progress(),
            )
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RegistryError::Verify { .. }), "{msg}");
        assert!(
            msg.contains(d.as_str()) && msg.contains("digest mismatch"),
            "{msg}"
        );
        assert!(!sink.has_blob(&d));
        assert!(
            !sink.files().iter().any(|f| f.starts_with(".tmp")),
            "{:?}",
            sink.files()
        );
        // The manifest is not stored either: the image is not there.
        assert!(!sink.has_blob(&Digest::sha256_of(&image.manifest)));
    });
}

#[test]
fn registry_killed_mid_download_leaves_nothing_docker_registry() {
    let mut reg = TestRegistry::start();
    let src = DirSink::new();
    let big = noise(30, 48 << 20);
    let image = make_image(&src, "amd64", &[big]);
    let r = reference(&reg, "dies:1");
    rt().block_on(async {
        let client = Registry::new(r.domain(), opts()).unwrap();
        client
            .push(&r, &image, src.clone(), &kiln_registry::no_progress())
            .await
            .unwrap();
    });
    let pid = reg.pid().unwrap();
    let layer = image.blobs[1].digest.clone();
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let k2 = killed.clone();
    let l2 = layer.clone();
    let progress: kiln_registry::Progress = Arc::new(move |e| {
        if let Event::BlobProgress { digest, done, .. } = e
            && digest == l2
            && done > 0
            && !k2.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            // Kill by PID while the layer is streaming.
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .status();
        }
    });
    let sink = DirSink::new();
    let err = rt().block_on(async {
        let client = Registry::new(r.domain(), opts()).unwrap();
        client
            .pull(&r, &Platform::host(), sink.clone(), &progress)
            .await
            .unwrap_err()
    });
    reg.stop();
    assert!(killed.load(std::sync::atomic::Ordering::SeqCst));
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Connect { .. }), "{msg}");
    assert!(msg.contains(&reg.host()), "{msg}");
    assert!(!sink.has_blob(&layer));
    assert!(!sink.has_blob(&Digest::sha256_of(&image.manifest)));
    assert!(
        !sink.files().iter().any(|f| f.starts_with(".tmp")),
        "{:?}",
        sink.files()
    );
}

#[test]
fn htpasswd_basic_auth_docker_registry() {
    let reg = TestRegistry::start_with(&RegistryConfig {
        users: vec![("kiln".into(), "s3cret".into())],
    });
    let src = DirSink::new();
    let image = make_image(&src, "amd64", &[noise(40, 2000)]);
    let r = reference(&reg, "private/app:1");
    rt().block_on(async {
        let good = Registry::new(
            r.domain(),
            ClientOptions {
                credential: Some(Credential::basic("kiln", "s3cret")),
                ..opts()
            },
        )
        .unwrap();
        good.check_login().await.unwrap();
        good.push(&r, &image, src.clone(), &kiln_registry::no_progress())
            .await
            .unwrap();
        let sink = DirSink::new();
        good.pull(
            &r,
            &Platform::host(),
            sink.clone(),
            &kiln_registry::no_progress(),
        )
        .await
        .unwrap();
        assert!(sink.has_blob(&image.blobs[1].digest));

        // Bad password: 401, named as such.
        let bad = Registry::new(
            r.domain(),
            ClientOptions {
                credential: Some(Credential::basic("kiln", "wrong")),
                ..opts()
            },
        )
        .unwrap();
        let err = bad.check_login().await.unwrap_err();
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
        let err = bad
            .pull(
                &r,
                &Platform::host(),
                DirSink::new(),
                &kiln_registry::no_progress(),
            )
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("unauthorized")
                && msg.contains(&reg.host())
                && msg.contains("private/app"),
            "{msg}"
        );
        assert!(!msg.contains("wrong"), "never print secrets: {msg}");

        // No credentials at all.
        let anon = Registry::new(r.domain(), opts()).unwrap();
        let err = anon
            .pull(
                &r,
                &Platform::host(),
                DirSink::new(),
                &kiln_registry::no_progress(),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("kiln login"), "{err}");
    });
}

#[test]
fn missing_tag_is_a_clear_not_found_docker_registry() {
    let reg = TestRegistry::start();
    let r = reference(&reg, "nothing/here:v9");
    let err = rt().block_on(async {
        let client = Registry::new(r.domain(), opts()).unwrap();
        client
            .pull(
                &r,
                &Platform::host(),
                DirSink::new(),
                &kiln_registry::no_progress(),
            )
            .await
            .unwrap_err()
    });
    let msg = err.to_string();
    assert!(
        msg.contains("not found") && msg.contains("nothing/here") && msg.contains("v9"),
        "{msg}"
    );
}

#[test]
fn unreachable_registry_is_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r: Reference = format!("127.0.0.1:{port}/x:1").parse().unwrap();
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
    assert!(matches!(err, RegistryError::Connect { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    let _ = Descriptor::new("x", Digest::sha256_of(b""), 0);
}
