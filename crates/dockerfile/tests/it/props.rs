//! Properties: no input panics the parser, the typed layer or the lexer.

use std::collections::HashMap;

use kiln_dockerfile::Dockerfile;
use kiln_dockerfile::shell::Lexer;
use proptest::prelude::*;

use crate::fixtures::cases;

fn corpus() -> Vec<Vec<u8>> {
    cases("parse")
        .into_iter()
        .map(|(_, d)| std::fs::read(d.join("Dockerfile")).unwrap())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Dockerfile::parse(&bytes);
    }

    #[test]
    fn dockerfile_like_text_never_panics(text in "(?s)([A-Za-z]{0,8}[ \t]?(--[a-z]+=?)?[\\\\`'\"$<{}\\[\\],=#: \t\r\n\\-a-z0-9]{0,40}\n){0,12}") {
        let _ = Dockerfile::parse(text.as_bytes());
    }

    #[test]
    fn mutated_fixtures_never_panic(which in 0usize..64, edits in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..12)) {
        let corpus = corpus();
        let mut bytes = corpus[which % corpus.len()].clone();
        for (pos, byte, op) in edits {
            let at = if bytes.is_empty() { 0 } else { usize::from(pos) % bytes.len() };
            match op {
                0 if !bytes.is_empty() => { bytes[at] = byte; }
                1 => bytes.insert(at, byte),
                _ if !bytes.is_empty() => { bytes.remove(at); }
                _ => {}
            }
        }
        if let Ok(tree) = kiln_dockerfile::syntax::parse(&bytes) {
            // Spans stay inside the source and line numbers are ordered.
            for node in &tree.instructions {
                prop_assert!(node.span.start <= node.span.end && node.span.end <= tree.source.len());
                prop_assert!(node.start_line <= node.end_line);
                // line_col (binary search over line starts) agrees with
                // counting newlines.
                let mut at = node.span.start;
                while !tree.source.is_char_boundary(at) {
                    at -= 1;
                }
                let before = &tree.source[..at];
                let line = before.matches('\n').count() + 1;
                let col = before[before.rfind('\n').map_or(0, |i| i + 1)..].chars().count() + 1;
                prop_assert_eq!(tree.line_col(node.span.start), (line, col));
                let text = tree.source.split('\n').nth(line - 1).unwrap_or("").trim_end_matches('\r');
                prop_assert_eq!(tree.line_text(line), text);
            }
            let _ = Dockerfile::from_tree(tree);
        }
    }

    #[test]
    fn lexer_never_panics(word in "[a-z$'\"\\\\`{}:#%/?*+\\- ]{0,30}", value in "[a-z*?/ ]{0,10}") {
        let env = HashMap::from([("a".to_string(), value)]);
        for escape in ['\\', '`'] {
            let lexer = Lexer::new(escape);
            let _ = lexer.process_word(&word, &env);
            let _ = lexer.process_words(&word, &env);
        }
    }
}
