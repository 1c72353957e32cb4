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

/// Every error of both layers, as `line:column: message`, in file order.
fn all_errors(source: &str) -> String {
    let (tree, mut errors) = kiln_dockerfile::syntax::parse_recovering(source.as_bytes());
    if let Err(more) = Dockerfile::from_tree_all(tree) {
        errors.extend(more);
    }
    errors.sort_by_key(|e| (e.location().line, e.location().column));
    let mut out = String::new();
    for e in &errors {
        let l = e.location();
        out.push_str(&format!("{}:{}: {}\n", l.line, l.column, e.message()));
    }
    out
}

#[test]
fn every_error_in_a_file_is_reported_not_just_the_first() {
    let source = "FROM alpine AS 1bad\n\
                  RUN --mount=type=cache --netwrok=none \\\n    --mount=type=bogus make\n\
                  ENV novalue\n\
                  COPPY . /\n\
                  COPY --chmod=99 a b\n\
                  CMD [\"a\", 1]\n\
                  RUN --network=wifi true\n";
    assert_eq!(
        all_errors(source),
        "1:16: invalid name for build stage: `1bad`, name can't start with a number or contain symbols\n\
         2:5: a cache mount needs a target: `target=/path`\n\
         2:24: unknown flag `--netwrok` for RUN\n\
         3:5: unsupported mount type `bogus`\n\
         4:1: ENV must have two arguments\n\
         5:1: unknown instruction: `COPPY`\n\
         6:6: invalid --chmod value `99`\n\
         7:1: when using JSON array syntax, arrays must be comprised of strings only\n\
         8:5: unsupported network mode `wifi`\n"
    );
    // The first of them is what the one-error API returns.
    let first = Dockerfile::parse(source.as_bytes()).unwrap_err();
    assert_eq!(first.message(), "ENV must have two arguments");
}

#[test]
fn parsing_resumes_after_a_syntax_error_and_the_good_lines_are_kept() {
    let source = "FROM alpine\nENV\nLABEL a\nCMD [1]\nRUN ok\n";
    let (tree, errors) = kiln_dockerfile::syntax::parse_recovering(source.as_bytes());
    let lines: Vec<usize> = errors.iter().map(|e| e.location().line).collect();
    assert_eq!(lines, [3, 4], "{errors:?}");
    let cmds: Vec<&str> = tree.instructions.iter().map(|n| n.cmd.as_str()).collect();
    assert_eq!(cmds, ["from", "env", "run"]);
    // An unterminated heredoc swallows the rest: it is the last error.
    let source = "FROM a\nENV x\nRUN <<EOF\necho\nCMD [1]\n";
    let (_, errors) = kiln_dockerfile::syntax::parse_recovering(source.as_bytes());
    let messages: Vec<&str> = errors.iter().map(kiln_dockerfile::Error::message).collect();
    assert_eq!(
        messages,
        ["ENV must have two arguments", "unterminated heredoc `EOF`"]
    );
}

/// BuildKit's scanner takes lines of at most 65,535 bytes: a longer one is
/// an error at its line and first byte, counted in the raw bytes — also
/// when invalid UTF-8 makes the parsed text longer than the input.
#[test]
fn a_line_over_64_kib_is_an_error_at_its_line() {
    for invalid in [false, true] {
        let mut long = b"RUN echo ".to_vec();
        if invalid {
            // One byte here, three (U+FFFD) in the text.
            long.push(0xff);
        }
        let limit = long.clone();
        long.resize(65_536, b'a');
        let mut fits = limit;
        fits.resize(65_535, b'a');
        let mut input = b"FROM scratch\n".to_vec();
        input.extend_from_slice(&fits);
        input.push(b'\n');
        let long_at = input.len();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nRUN true\n");

        let (_, errors) = kiln_dockerfile::syntax::parse_recovering(&input);
        let too_long: Vec<_> = errors
            .iter()
            .filter(|e| {
                e.message()
                    .contains("greater than max allowed size of 65535")
            })
            .map(kiln_dockerfile::Error::location)
            .collect();
        assert_eq!(too_long.len(), 1, "invalid UTF-8: {invalid}: {errors:?}");
        assert_eq!(too_long[0].line, 3, "invalid UTF-8: {invalid}");
        assert_eq!(too_long[0].column, 1);
        assert_eq!(too_long[0].span.start, long_at, "invalid UTF-8: {invalid}");
    }
}
