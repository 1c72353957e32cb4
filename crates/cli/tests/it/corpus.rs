//! The Dockerfile corpus (`testdata/build/`) against kiln: the snapshot
//! code reads kiln's own archives the way it reads BuildKit's.

use kiln_test_support::TempRoot;
use kiln_test_support::busybox_rootfs_tar;
use kiln_test_support::corpus::{BASE_IMAGE, cases, corpus_dir, prepare_context};
use kiln_test_support::snapshot::{Snapshot, base_tree, read_docker_archive, snapshot};

use crate::images::import_busybox;
use crate::support::{kiln, output};

/// `kiln save --format docker` of `name`, snapshotted against the base.
pub fn kiln_snapshot(root: &std::path::Path, name: &str) -> kiln_test_support::snapshot::Snapshot {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    let (out, _, stderr) = output(
        kiln(root)
            .args(["save", "--format", "docker", "-o"])
            .arg(&archive)
            .arg(name),
    );
    assert!(out.status.success(), "kiln save {name}: {stderr}");
    let image = read_docker_archive(&archive).unwrap();
    let base = base_tree(&busybox_rootfs_tar()).unwrap();
    snapshot(&image, &base)
}

#[test]
fn imported_base_snapshots_as_nothing_changed() {
    let root = TempRoot::new();
    import_busybox(root.path(), BASE_IMAGE);
    let snap = kiln_snapshot(root.path(), BASE_IMAGE);
    assert!(snap.filesystem.is_empty(), "{:?}", snap.filesystem);
    assert!(snap.removed.is_empty(), "{:?}", snap.removed);
    // import_busybox sets CMD ["sh"]; nothing else.
    assert_eq!(
        serde_json::to_value(&snap.config).unwrap(),
        serde_json::json!({"Cmd": ["sh"]})
    );
}

/// File a case's differences: a known gap must still differ, anything else
/// must not.
fn record(
    name: &str,
    gap: Option<&(&str, &str)>,
    failures: Vec<String>,
    gaps: &mut Vec<String>,
    all: &mut Vec<String>,
) {
    match (gap, failures.is_empty()) {
        (Some((_, why)), false) => gaps.push(format!("{name} ({why})")),
        (Some(_), true) => all.push(format!(
            "== {name}: matches BuildKit now; take it off KNOWN_GAPS"
        )),
        (None, _) => all.extend(failures),
    }
}

/// Import the busybox base exactly as the reference did (`docker import`:
/// no config changes).
fn import_base(root: &std::path::Path) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rootfs.tar");
    kiln_test_support::write_busybox_rootfs_tar(&path);
    let (out, _, stderr) = output(kiln(root).arg("import").arg(&path).arg(BASE_IMAGE));
    assert!(out.status.success(), "kiln import: {stderr}");
}

fn build(
    root: &std::path::Path,
    tag: &str,
    dockerfile: &std::path::Path,
    flags: &[String],
    ctx: &std::path::Path,
) -> Result<(), String> {
    let (out, stdout, stderr) = output(
        kiln(root)
            .args([
                "build",
                "--progress",
                "plain",
                "--network",
                "none",
                "-t",
                tag,
                "-f",
            ])
            .arg(dockerfile)
            .args(flags)
            .arg(ctx),
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "kiln build failed ({}):\n{stdout}\n{stderr}",
            out.status
        ))
    }
}

/// Cases where kiln is known to differ from BuildKit, each with the reason.
/// They are still built and compared: the test fails when one of them
/// starts to match (take it off this list then), so a gap can neither hide
/// nor outlive its fix.
const KNOWN_GAPS: &[(&str, &str)] = &[];

/// Every case of `testdata/build/` built by kiln gives the image BuildKit
/// gave (file system and config; see kiln_test_support::snapshot), except
/// the [`KNOWN_GAPS`]. Set `KILN_CORPUS_CASES=a,b` to run some cases only.
#[test]
fn corpus_matches_buildkit_needs_root() {
    assert!(
        is_root(),
        "corpus_matches_buildkit_needs_root must run as root (RUN steps need namespaces)"
    );
    let only: Option<Vec<String>> = std::env::var("KILN_CORPUS_CASES")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let root = TempRoot::new();
    import_base(root.path());
    let mut all_failures = Vec::new();
    let mut gaps = Vec::new();
    let mut ran = 0;
    for case in cases(&corpus_dir()) {
        if only.as_ref().is_some_and(|o| !o.contains(&case.name)) {
            continue;
        }
        ran += 1;
        let gap = KNOWN_GAPS.iter().find(|(name, _)| *name == case.name);
        let mut failures = Vec::new();
        let text = std::fs::read_to_string(case.expected()).unwrap();
        let expected = Snapshot::from_json(&text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        prepare_context(&case, &ctx);
        if let Some(base) = case.base_dockerfile()
            && let Err(e) = build(root.path(), &case.base_tag(), &base, &[], &ctx)
        {
            failures.push(format!("== {}: base image: {e}", case.name));
            record(&case.name, gap, failures, &mut gaps, &mut all_failures);
            continue;
        }
        let tag = format!("corpus-case/{}:latest", case.name);
        if let Err(e) = build(root.path(), &tag, &case.dockerfile(), &case.flags, &ctx) {
            failures.push(format!("== {}: {e}", case.name));
            record(&case.name, gap, failures, &mut gaps, &mut all_failures);
            continue;
        }
        let diff = expected.diff(&kiln_snapshot(root.path(), &tag));
        if !diff.is_empty() {
            failures.push(format!("== {}:\n  {}", case.name, diff.join("\n  ")));
        }
        record(&case.name, gap, failures, &mut gaps, &mut all_failures);
    }
    let failures = all_failures;
    eprintln!(
        "corpus: {ran} cases, {} known gaps: {}",
        gaps.len(),
        gaps.join("; ")
    );
    assert!(ran > 0, "no corpus case matched KILN_CORPUS_CASES");
    assert!(
        failures.is_empty(),
        "{} of {ran} corpus cases differ from BuildKit:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Whether this process runs as root (effective uid 0).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
