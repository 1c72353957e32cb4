//! `testdata/dockerfile/parse/<case>/Dockerfile` → `snapshot.snap`: the
//! syntax tree (BuildKit dump + JSON) and the typed stages.

use std::fmt::Write as _;

use kiln_dockerfile::syntax;
use kiln_dockerfile::{Dockerfile, Error};

use crate::fixtures::cases;

fn typed_summary(df: &Result<Dockerfile, Error>) -> String {
    let df = match df {
        Ok(df) => df,
        Err(e) => {
            let l = e.location();
            return format!("typed: error at {}:{}: {}\n", l.line, l.column, e.message());
        }
    };
    let mut out = String::new();
    for arg in &df.global_args {
        let _ = writeln!(out, "global {:?}", arg.kind);
    }
    for stage in &df.stages {
        let _ = writeln!(
            out,
            "stage {} name={:?} base={:?} platform={:?}",
            stage.index, stage.name, stage.base, stage.platform
        );
        for ins in &stage.instructions {
            let _ = writeln!(
                out,
                "  {}-{} {:?}",
                ins.meta.start_line, ins.meta.end_line, ins.kind
            );
        }
    }
    out
}

#[test]
fn parse_fixtures_match_their_snapshots() {
    for (name, dir) in cases("parse") {
        let bytes = std::fs::read(dir.join("Dockerfile")).unwrap();
        let tree = syntax::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let typed = typed_summary(&Dockerfile::from_tree(tree.clone()));
        let text = format!(
            "== dump\n{}\n== typed\n{}\n== json\n{}\n",
            tree.dump(),
            typed,
            tree.to_json()
        );
        insta::with_settings!({
            snapshot_path => dir.clone(),
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("testdata/dockerfile/parse/{name}/Dockerfile"),
        }, {
            insta::assert_snapshot!("snapshot", text);
        });
    }
}
