//! `kiln pull`, `kiln push`, `kiln login`, `kiln logout` against a real
//! `docker-registry` on 127.0.0.1, with skopeo interop both ways.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use kiln_test_support::TempRoot;
use kiln_test_support::registry::{RegistryConfig, TestRegistry};

use crate::images::import_busybox;
use crate::support::{kiln, output, output_with_stdin};

/// kiln with a private docker config directory (never the user's).
fn kiln_cfg(root: &Path, docker_config: &Path) -> Command {
    let mut c = kiln(root);
    c.env("DOCKER_CONFIG", docker_config)
        .env_remove("KILN_INSECURE_REGISTRIES");
    c
}

fn skopeo(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is needed by this test: run scripts/install-test-deps.sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn push_then_skopeo_inspect_then_pull_into_a_fresh_store_docker_registry_skopeo() {
    let reg = TestRegistry::start();
    let cfg = tempfile::tempdir().unwrap();
    let root = TempRoot::new();
    let id = import_busybox(root.path(), "busybox");
    let target = format!("{}/kiln/busybox:1", reg.host());
    let (out, stdout, stderr) =
        output(kiln_cfg(root.path(), cfg.path()).args(["tag", "busybox", &target]));
    assert!(out.status.success(), "{stderr}");
    let (out, stdout2, stderr) = output(kiln_cfg(root.path(), cfg.path()).args(["push", &target]));
    let _ = stdout;
    assert!(out.status.success(), "{stderr}");
    let digest = stdout2
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest printed: {stdout2}"))
        .to_owned();
    assert!(stderr.contains("Pushed"), "{stderr}");

    // skopeo sees what kiln pushed: gzip layers, the same config.
    let (ok, json, err) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["Digest"], digest);
    let (ok, raw, err) = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
    assert!(ok, "{err}");
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(m["config"]["digest"], id);

    // A second push uploads nothing.
    let (out, _, stderr) = output(kiln_cfg(root.path(), cfg.path()).args(["push", &target]));
    assert!(
        out.status.success() && stderr.contains("already exists"),
        "{stderr}"
    );

    // Pulled into an empty store: same image id, runnable layers.
    let fresh = TempRoot::new();
    let (out, stdout, stderr) = output(kiln_cfg(fresh.path(), cfg.path()).args(["pull", &target]));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("Digest: {digest}")), "{stderr}");
    assert_eq!(stdout.trim(), target);
    let (out, json, stderr) = output(kiln_cfg(fresh.path(), cfg.path()).args(["inspect", &target]));
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["Id"], id);
    // Pulled again: nothing downloaded.
    let (out, _, stderr) = output(kiln_cfg(fresh.path(), cfg.path()).args(["pull", &target]));
    assert!(
        out.status.success() && stderr.contains("up to date"),
        "{stderr}"
    );
    // The pulled image is saved and loaded like any other (layers verified).
    let (out, _, stderr) =
        output(kiln_cfg(fresh.path(), cfg.path()).args(["save", "-o", "/dev/null", &target]));
    assert!(out.status.success(), "{stderr}");
}

#[test]
fn skopeo_pushed_image_is_pulled_by_kiln_docker_registry_skopeo() {
    let reg = TestRegistry::start();
    let cfg = tempfile::tempdir().unwrap();
    let root = TempRoot::new();
    let id = import_busybox(root.path(), "busybox:src");
    // skopeo copies from kiln's OCI layout (docker.io/library/busybox:src) to the registry.
    let src = format!(
        "oci:{}:docker.io/library/busybox:src",
        root.path().join("oci").display()
    );
    let dest = format!("docker://{}/from/skopeo:v2", reg.host());
    let (ok, _, err) = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-compress-format",
        "gzip",
        &src,
        &dest,
    ]);
    assert!(ok, "{err}");
    let fresh = TempRoot::new();
    let name = format!("{}/from/skopeo:v2", reg.host());
    let (out, _, stderr) = output(kiln_cfg(fresh.path(), cfg.path()).args(["pull", "-q", &name]));
    assert!(out.status.success(), "{stderr}");
    let (_, json, _) = output(kiln_cfg(fresh.path(), cfg.path()).args(["inspect", &name]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["Id"], id);
    // And by digest, untagged.
    let (ok, digest, err) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &dest,
    ]);
    assert!(ok, "{err}");
    let by_digest = format!("{}/from/skopeo@{}", reg.host(), digest.trim());
    let (out, _, stderr) = output(kiln_cfg(fresh.path(), cfg.path()).args(["pull", &by_digest]));
    assert!(out.status.success(), "{stderr}");
}

#[test]
fn login_push_logout_with_htpasswd_docker_registry() {
    let reg = TestRegistry::start_with(&RegistryConfig {
        users: vec![("kiln".into(), "s3cret-pw".into())],
    });
    let cfg = tempfile::tempdir().unwrap();
    let root = TempRoot::new();
    import_busybox(root.path(), "busybox");
    let target = format!("{}/private/bb:1", reg.host());
    output(kiln_cfg(root.path(), cfg.path()).args(["tag", "busybox", &target]));

    // Not logged in: 401, and the hint.
    let (out, _, stderr) = output(kiln_cfg(root.path(), cfg.path()).args(["push", &target]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("unauthorized") && stderr.contains("kiln login"),
        "{stderr}"
    );

    let login = |pw: &str| {
        let mut c = kiln_cfg(root.path(), cfg.path());
        c.args(["login", "-u", "kiln", "--password-stdin", &reg.host()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{pw}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = login("wrong-pw");
    assert!(!ok, "{text}");
    assert!(
        text.contains("unauthorized") && text.contains(&reg.host()),
        "{text}"
    );
    assert!(!text.contains("wrong-pw"), "never print secrets: {text}");
    assert!(
        !cfg.path().join("config.json").exists(),
        "nothing saved on failure"
    );

    let (ok, text) = login("s3cret-pw");
    assert!(ok && text.contains("Login Succeeded"), "{text}");
    let saved = std::fs::read_to_string(cfg.path().join("config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert!(v["auths"][reg.host()]["auth"].is_string(), "{saved}");
    assert!(!saved.contains("s3cret-pw"));

    let (out, _, stderr) = output(kiln_cfg(root.path(), cfg.path()).args(["push", &target]));
    assert!(out.status.success(), "{stderr}");
    let (ok, _, err) = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        "kiln:s3cret-pw",
        &format!("docker://{target}"),
    ]);
    assert!(ok, "{err}");

    let (out, stdout, _) = output(kiln_cfg(root.path(), cfg.path()).args(["logout", &reg.host()]));
    assert!(
        out.status.success() && stdout.contains("Removing login credentials"),
        "{stdout}"
    );
    let (out, _, stderr) = output(kiln_cfg(root.path(), cfg.path()).args(["pull", &target]));
    assert!(
        !out.status.success() && stderr.contains("unauthorized"),
        "{stderr}"
    );
    let (_, stdout, _) = output(kiln_cfg(root.path(), cfg.path()).args(["logout", &reg.host()]));
    assert!(stdout.contains("Not logged in"), "{stdout}");
}

#[test]
fn pull_errors_are_clear_docker_registry() {
    let reg = TestRegistry::start();
    let cfg = tempfile::tempdir().unwrap();
    let root = TempRoot::new();
    let name = format!("{}/no/such:tag", reg.host());
    let (out, _, stderr) = output(kiln_cfg(root.path(), cfg.path()).args(["pull", &name]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("not found") && stderr.contains("no/such") && stderr.contains(&reg.host()),
        "{stderr}"
    );
    let (out, _, stderr) =
        output(kiln_cfg(root.path(), cfg.path()).args(["pull", "--platform", "linux", &name]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("invalid platform"), "{stderr}");
    let (out, _, stderr) = output(kiln_cfg(root.path(), cfg.path()).args(["pull", "Busybox"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("must be lowercase"), "{stderr}");
}

#[test]
fn build_from_a_registry_base_then_offline_then_push_docker_registry_skopeo() {
    let mut reg = TestRegistry::start();
    let cfg = tempfile::tempdir().unwrap();
    let src = TempRoot::new();
    import_busybox(src.path(), "busybox");
    let base = format!("{}/base/busybox:1", reg.host());
    output(kiln_cfg(src.path(), cfg.path()).args(["tag", "busybox", &base]));
    let (out, _, stderr) = output(kiln_cfg(src.path(), cfg.path()).args(["push", "-q", &base]));
    assert!(out.status.success(), "{stderr}");

    // A fresh store: FROM comes from the registry, the result is pushed.
    let root = TempRoot::new();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nCOPY <<EOF /hello\nhi\nEOF\nENV A=1\n"),
    )
    .unwrap();
    let built = format!("{}/app/built:2", reg.host());
    let (out, _, stderr) = output(
        kiln_cfg(root.path(), cfg.path())
            .args(["build", "--progress", "plain", "--push", "-t", &built])
            .arg(ctx.path()),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Pull complete") && stderr.contains("pushed"),
        "{stderr}"
    );
    let (ok, raw, err) = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{built}"),
    ]);
    assert!(ok, "{err}");
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["layers"].as_array().unwrap().len(), 2, "{raw}");
    // The base layer was mounted or found, never uploaded twice: both in the registry.
    let (out, _, _) = output(kiln_cfg(root.path(), cfg.path()).args(["inspect", &base]));
    assert!(
        out.status.success(),
        "the base is in the store after the build"
    );

    // Offline: the base is in the store, the registry is never asked.
    reg.stop();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nENV B=2\n"),
    )
    .unwrap();
    let (out, _, stderr) = output(
        kiln_cfg(root.path(), cfg.path())
            .args(["build", "--progress", "plain", "-t", "offline"])
            .arg(ctx.path()),
    );
    assert!(out.status.success(), "{stderr}");
    // --pull must check the registry: it is gone, so the build fails, saying so.
    let (out, _, stderr) = output(
        kiln_cfg(root.path(), cfg.path())
            .args(["build", "--progress", "plain", "--pull"])
            .arg(ctx.path()),
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach registry") && stderr.contains("Dockerfile:1"),
        "{stderr}"
    );
}

#[test]
fn credential_helpers_store_get_and_erase_docker_registry() {
    use std::os::unix::fs::PermissionsExt;
    let reg = TestRegistry::start_with(&RegistryConfig {
        users: vec![("helper-user".into(), "helper-pw".into())],
    });
    let cfg = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let stored = bin.path().join("stored.json");
    // A docker-credential-* helper keeping one credential in a file.
    let helper = bin.path().join("docker-credential-kilntest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nstore={}\ncase \"$1\" in\n  store) cat > \"$store\" ;;\n  get) read server; if [ -s \"$store\" ]; then cat \"$store\"; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n  erase) read server; rm -f \"$store\" ;;\nesac\n",
            stored.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        cfg.path().join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"kilntest"}}}}"#, reg.host()),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let root = TempRoot::new();
    import_busybox(root.path(), "busybox");
    let target = format!("{}/helped/bb:1", reg.host());
    output(kiln_cfg(root.path(), cfg.path()).args(["tag", "busybox", &target]));

    let mut c = kiln_cfg(root.path(), cfg.path());
    c.env("PATH", &path).args([
        "login",
        "-u",
        "helper-user",
        "--password-stdin",
        &reg.host(),
    ]);
    let out = output_with_stdin(&mut c, b"helper-pw\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The secret went to the helper, not into config.json.
    let helper_json = std::fs::read_to_string(&stored).unwrap();
    assert!(
        helper_json.contains("helper-pw") && helper_json.contains(&reg.host()),
        "{helper_json}"
    );
    let config = std::fs::read_to_string(cfg.path().join("config.json")).unwrap();
    assert!(
        !config.contains("helper-pw") && config.contains("credHelpers"),
        "{config}"
    );

    let (out, _, stderr) = output(
        kiln_cfg(root.path(), cfg.path())
            .env("PATH", &path)
            .args(["push", &target]),
    );
    assert!(
        out.status.success(),
        "the helper's credentials are used: {stderr}"
    );

    let (out, stdout, _) = output(
        kiln_cfg(root.path(), cfg.path())
            .env("PATH", &path)
            .args(["logout", &reg.host()]),
    );
    assert!(
        out.status.success() && stdout.contains("Removing"),
        "{stdout}"
    );
    assert!(!stored.exists(), "erased from the helper");
}

#[test]
fn insecure_registries_from_flag_env_and_config_use_plain_http() {
    // `.invalid` never resolves: the error shows which scheme was tried last.
    let cfg = tempfile::tempdir().unwrap();
    let root = TempRoot::new();
    let name = "reg.invalid:5000/x:1";
    let (out, _, stderr) = output(kiln_cfg(root.path(), cfg.path()).args(["pull", name]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("https://reg.invalid:5000/v2/"),
        "secure by default: {stderr}"
    );
    let (_, _, stderr) = output(kiln_cfg(root.path(), cfg.path()).args([
        "pull",
        "--insecure-registry",
        "reg.invalid:5000",
        name,
    ]));
    assert!(
        stderr.contains("http://reg.invalid:5000/v2/"),
        "flag: {stderr}"
    );
    let (_, _, stderr) = output(
        kiln_cfg(root.path(), cfg.path())
            .env("KILN_INSECURE_REGISTRIES", "other.invalid,reg.invalid:5000")
            .args(["pull", name]),
    );
    assert!(
        stderr.contains("http://reg.invalid:5000/v2/"),
        "env: {stderr}"
    );
    std::fs::write(
        root.path().join("registries.json"),
        r#"{"insecure-registries": ["reg.invalid:5000"]}"#,
    )
    .unwrap();
    let (_, _, stderr) = output(kiln_cfg(root.path(), cfg.path()).args(["pull", name]));
    assert!(
        stderr.contains("http://reg.invalid:5000/v2/"),
        "config: {stderr}"
    );
}
