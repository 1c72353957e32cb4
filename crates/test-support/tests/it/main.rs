//! The committed corpus is well-formed: every case has a Dockerfile and an
//! expected snapshot in canonical form, and every case's context can be
//! prepared.

use kiln_test_support::corpus::{cases, corpus_dir, prepare_context};
use kiln_test_support::snapshot::Snapshot;

#[test]
fn corpus_has_at_least_thirty_cases_with_canonical_snapshots() {
    let cases = cases(&corpus_dir());
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    for case in &cases {
        let path = case.expected();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run testdata/build/regen-expected.sh)",
                path.display()
            )
        });
        let snap = Snapshot::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            !snap.reference.is_empty(),
            "{}: says not where it came from",
            path.display()
        );
        assert_eq!(
            snap.to_json(),
            text,
            "{}: not in canonical form",
            path.display()
        );
        let mut sorted = snap.filesystem.iter().map(|e| &e.path).collect::<Vec<_>>();
        sorted.sort();
        assert!(
            sorted
                .iter()
                .zip(&snap.filesystem)
                .all(|(a, b)| **a == b.path),
            "{}: entries not sorted",
            path.display()
        );
    }
}

#[test]
fn every_context_prepares() {
    for case in cases(&corpus_dir()) {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        prepare_context(&case, &ctx);
        assert!(ctx.is_dir(), "{}", case.name);
    }
}
