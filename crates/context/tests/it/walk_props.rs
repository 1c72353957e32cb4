//! The walk against a brute-force reference: whatever the tree and the
//! `.dockerignore`, `Context::walk` lists exactly the entries that
//! `Matcher::verdict` keeps (plus the excluded directories holding one),
//! so the walk's shortcuts (not entering excluded directories, matching
//! each entry once with its parents' results carried down) never change
//! what a build sees.

use std::path::{Path, PathBuf};

use kiln_context::{Context, DockerfileSpec, EntryKind, Matcher};
use proptest::prelude::*;

/// Every entry under `dir` (relative to `root`), depth first, sorted.
fn all_entries(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, bool)>) {
    let mut names: Vec<_> = std::fs::read_dir(root.join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let rel = dir.join(&name);
        let is_dir = std::fs::symlink_metadata(root.join(&rel)).unwrap().is_dir();
        out.push((rel.clone(), is_dir));
        if is_dir {
            all_entries(root, &rel, out);
        }
    }
}

/// What the walk must list: each entry the rules keep, and each excluded
/// directory that holds a kept entry.
fn reference(root: &Path, rules: &Matcher) -> Vec<String> {
    let mut all = Vec::new();
    all_entries(root, Path::new(""), &mut all);
    let kept: Vec<&PathBuf> = all
        .iter()
        .filter(|(p, _)| !rules.is_excluded_path(p))
        .map(|(p, _)| p)
        .collect();
    all.iter()
        .filter(|(p, is_dir)| {
            !rules.is_excluded_path(p) || (*is_dir && kept.iter().any(|k| k.starts_with(p)))
        })
        .map(|(p, _)| p.display().to_string())
        .collect()
}

fn component() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "ab", "c.log"])
}

fn pattern_part() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a", "b", "ab", "c.log", "*", "?", "**", "a*", "*.log", "[ab]", "a**", "**b",
    ])
}

fn pattern() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(pattern_part(), 1..4),
    )
        .prop_map(|(bang, slash, parts)| {
            format!(
                "{}{}{}",
                if bang { "!" } else { "" },
                if slash { "/" } else { "" },
                parts.join("/")
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn walk_lists_what_the_rules_keep(
        files in prop::collection::vec(prop::collection::vec(component(), 1..5), 1..14),
        patterns in prop::collection::vec(pattern(), 0..5),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        for parts in &files {
            let p: PathBuf = parts.iter().collect();
            // A name may be a file on one path and a directory on another:
            // the first one written wins.
            if let Some(parent) = p.parent()
                && std::fs::create_dir_all(root.join(parent)).is_err()
            {
                continue;
            }
            let _ = std::fs::write(root.join(&p), "x");
        }
        let text = patterns.join("\n");
        std::fs::write(root.join(".dockerignore"), &text).unwrap();
        let ctx = Context::from_dir(root, DockerfileSpec::Default).unwrap();
        let rules = Matcher::parse(".dockerignore", text.as_bytes()).unwrap();
        let walked: Vec<String> = ctx
            .walk()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e.kind == EntryKind::Dir, root.join(&e.rel).is_dir());
                e.rel.display().to_string()
            })
            .collect();
        let expected = reference(root, &rules);
        prop_assert_eq!(&walked, &expected, "rules:\n{}", text);
        // A COPY of a subdirectory starts its walk there, with the rules
        // that matched the directory and its parents already known.
        for sub in ["a", "a/ab", "b/a"] {
            if !root.join(sub).is_dir() || rules.is_excluded(sub) {
                continue;
            }
            let selection = ctx
                .select(&[sub], &kiln_context::SourceOptions::default(), false)
                .unwrap();
            let selected: Vec<String> = selection
                .entries()
                .iter()
                .map(|e| e.rel.display().to_string())
                .collect();
            let below: Vec<String> = expected
                .iter()
                .filter(|p| Path::new(p).starts_with(sub))
                .cloned()
                .collect();
            prop_assert_eq!(selected, below, "COPY {} with rules:\n{}", sub, text);
        }
    }
}
