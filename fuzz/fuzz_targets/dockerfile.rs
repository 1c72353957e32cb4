//! The Dockerfile frontend on arbitrary bytes: the syntax tree, its JSON and
//! dump renderings, the typed IR, the build checks and the shell lexer must
//! never panic, and what they return must hold together.
#![no_main]

use std::collections::HashMap;

use kiln_dockerfile::shell::Lexer;
use kiln_dockerfile::{Dockerfile, syntax};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = syntax::parse(data) {
        for node in &tree.instructions {
            assert!(node.span.start <= node.span.end && node.span.end <= tree.source.len());
            assert!(node.start_line <= node.end_line);
            let loc = tree.locate(node.span);
            let _ = tree.line_text(loc.line);
        }
        let json = tree.to_json();
        assert!(
            serde_json::from_str::<serde_json::Value>(&json).is_ok(),
            "to_json produced invalid JSON: {json}"
        );
        let _ = tree.dump();
        if let Ok(df) = Dockerfile::from_tree(tree) {
            let _ = kiln_dockerfile::check::check(&df);
        }
    }
    // The lexer on the same bytes taken as one word, with both escapes.
    if let Ok(text) = std::str::from_utf8(data) {
        let env = HashMap::from([
            ("A".to_owned(), "a b".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ]);
        for escape in ['\\', '`'] {
            let lexer = Lexer::new(escape);
            let _ = lexer.process_word(text, &env);
            let _ = lexer.process_words(text, &env);
        }
    }
});
