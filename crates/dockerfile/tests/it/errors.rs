//! `testdata/dockerfile/errors/<case>/Dockerfile` → `snapshot.snap`: the
//! rendered error (line:column, the line, a caret, the help).

use kiln_dockerfile::Dockerfile;

use crate::fixtures::cases;

fn render(source: &str, err: &kiln_dockerfile::Error) -> String {
    let l = err.location();
    let line = source
        .split('\n')
        .nth(l.line.saturating_sub(1))
        .unwrap_or("")
        .trim_end_matches('\r');
    let mut out = format!("Dockerfile:{}:{}: {}\n", l.line, l.column, err.message());
    out.push_str(&format!("  | {line}\n"));
    out.push_str(&format!(
        "  | {}{}\n",
        " ".repeat(l.column.saturating_sub(1)),
        "^".repeat(l.width.max(1))
    ));
    if let Some(help) = err.help() {
        out.push_str(&format!("  = help: {help}\n"));
    }
    out
}

#[test]
fn error_fixtures_match_their_snapshots() {
    for (name, dir) in cases("errors") {
        let bytes = std::fs::read(dir.join("Dockerfile")).unwrap();
        let source = String::from_utf8_lossy(&bytes).into_owned();
        let Err(err) = Dockerfile::parse(&bytes) else {
            panic!("{name}: expected an error")
        };
        let l = err.location();
        assert!(l.line >= 1 && l.column >= 1, "{name}: {l:?}");
        insta::with_settings!({
            snapshot_path => dir.clone(),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("testdata/dockerfile/errors/{name}/Dockerfile"),
        }, {
            insta::assert_snapshot!("snapshot", render(&source, &err));
        });
    }
}
