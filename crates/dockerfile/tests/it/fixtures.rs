//! Finding the shared fixtures under `testdata/dockerfile/`.

use std::path::PathBuf;

/// `testdata/dockerfile/<sub>` of the workspace.
pub fn dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/dockerfile")
        .join(sub)
}

/// The case folders of `testdata/dockerfile/<sub>`, sorted.
pub fn cases(sub: &str) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no cases in {sub}");
    out
}
