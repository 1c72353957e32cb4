//! `testdata/dockerfile/check/<case>/Dockerfile` → `snapshot.snap`: the
//! findings of `check` (rule, severity, line:column, message, fix).

use std::fmt::Write as _;

use kiln_dockerfile::Dockerfile;
use kiln_dockerfile::check::{CheckConfig, Severity, check};

use crate::fixtures::cases;

#[test]
fn check_fixtures_match_their_snapshots() {
    for (name, dir) in cases("check") {
        let bytes = std::fs::read(dir.join("Dockerfile")).unwrap();
        let df = Dockerfile::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut text = String::new();
        match check(&df) {
            Ok(findings) => {
                for f in &findings {
                    let _ = writeln!(
                        text,
                        "{}:{} {:?} {}: {}\n    fix: {}",
                        f.location.line, f.location.column, f.severity, f.rule, f.message, f.fix
                    );
                }
                if findings.is_empty() {
                    text.push_str("no findings\n");
                }
            }
            Err(e) => {
                let _ = writeln!(
                    text,
                    "error {}:{}: {}",
                    e.location().line,
                    e.location().column,
                    e.message()
                );
            }
        }
        insta::with_settings!({
            snapshot_path => dir.clone(),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("testdata/dockerfile/check/{name}/Dockerfile"),
        }, {
            insta::assert_snapshot!("snapshot", text);
        });
    }
}

#[test]
fn check_directive_is_parsed() {
    let c = CheckConfig::parse("skip=A, B;error=true").unwrap();
    assert_eq!(c.skip, ["A", "B"]);
    assert!(c.error && !c.skip_all);
    assert!(CheckConfig::parse("skip=all").unwrap().skip_all);
    assert!(CheckConfig::parse("error=maybe").is_err());
    assert!(CheckConfig::parse("bogus=1").is_err());
    assert_eq!(CheckConfig::parse("").unwrap(), CheckConfig::default());
}

#[test]
fn error_true_makes_every_finding_an_error() {
    let df = Dockerfile::parse(b"# check=error=true\nFROM a AS B\nMAINTAINER x\n").unwrap();
    let findings = check(&df).unwrap();
    assert_eq!(findings.len(), 2);
    assert!(findings.iter().all(|f| f.severity == Severity::Error));
}

#[test]
fn urls_follow_buildkit_slugs() {
    let df = Dockerfile::parse(b"FROM a\nCMD x\n").unwrap();
    let f = &check(&df).unwrap()[0];
    assert_eq!(f.rule, "JSONArgsRecommended");
    assert_eq!(
        f.url,
        "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
    );
}
