//! kiln's own table of .dockerignore cases (`testdata/context/dockerignore-cases.txt`).

use kiln_context::Matcher;

const TABLE: &str = include_str!("../../../../testdata/context/dockerignore-cases.txt");

struct Case {
    name: String,
    ignore: String,
    checks: Vec<String>,
}

fn cases() -> Vec<Case> {
    let mut out: Vec<Case> = Vec::new();
    let mut in_checks = false;
    for line in TABLE.split_inclusive('\n') {
        if let Some(name) = line.strip_prefix("== ") {
            out.push(Case {
                name: name.trim().to_owned(),
                ignore: String::new(),
                checks: Vec::new(),
            });
            in_checks = false;
            continue;
        }
        let Some(case) = out.last_mut() else {
            continue; // the header comment
        };
        if line.trim_end() == "--" {
            in_checks = true;
        } else if in_checks {
            if !line.trim().is_empty() {
                case.checks
                    .push(line.trim_end_matches(['\n', '\r']).to_owned());
            }
        } else {
            case.ignore.push_str(line);
        }
    }
    out
}

#[test]
fn dockerignore_table() {
    let cases = cases();
    assert!(cases.len() >= 30, "table has {} cases", cases.len());
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        let parsed = Matcher::parse(".dockerignore", case.ignore.as_bytes());
        if case.checks == ["error"] {
            checked += 1;
            if parsed.is_ok() {
                failures.push(format!("{}: accepted an invalid file", case.name));
            }
            continue;
        }
        let m = match parsed {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{}: {e}", case.name));
                continue;
            }
        };
        for check in &case.checks {
            checked += 1;
            let (path, want) = check
                .split_once('\t')
                .unwrap_or_else(|| panic!("{}: bad check line {check:?}", case.name));
            let v = m.verdict(path);
            let got = match (v.excluded, v.rule) {
                (true, Some(r)) => format!("excluded@{}", r.line()),
                (false, Some(r)) => format!("included@{}", r.line()),
                (false, None) => "included".to_owned(),
                (true, None) => "excluded-without-rule".to_owned(),
            };
            if got != want {
                failures.push(format!("{}: {path:?}: want {want}, got {got}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn errors_name_file_line_and_pattern() {
    let err = Matcher::parse("app.Dockerfile.dockerignore", b"ok\n# c\n[z-a]\n").unwrap_err();
    assert_eq!(err.line, 3);
    assert_eq!(err.pattern, "[z-a]");
    let text = err.to_string();
    assert!(
        text.starts_with("app.Dockerfile.dockerignore:3: invalid pattern `[z-a]`"),
        "{text}"
    );
    let err = Matcher::parse(".dockerignore", b"a\n!\n").unwrap_err();
    assert_eq!((err.line, err.pattern.as_str()), (2, "!"));
}

#[test]
fn parent_match_is_reported() {
    let m = Matcher::parse(".dockerignore", b"node_modules\n").unwrap();
    let v = m.verdict("node_modules/a/b.js");
    assert!(v.excluded);
    assert_eq!(v.parent.as_deref(), Some("node_modules"));
    assert_eq!(m.verdict("node_modules").parent, None);
}

#[test]
fn may_reinclude_below_is_conservative_but_prunes() {
    let m = Matcher::parse(".dockerignore", b"*\n!src/keep\n!**/x\n").unwrap();
    assert!(m.may_reinclude_below("src"));
    assert!(m.may_reinclude_below("other")); // `**/x` could match anywhere
    let m = Matcher::parse(".dockerignore", b"node_modules\n!src/keep\n").unwrap();
    assert!(!m.may_reinclude_below("node_modules"));
    assert!(!m.may_reinclude_below("node_modules/a"));
    assert!(m.may_reinclude_below("src"));
}
