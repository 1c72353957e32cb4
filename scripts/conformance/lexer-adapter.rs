//! kiln's adapter for the shared lexer harness (`lexer-harness/src/adapter.rs`
//! in the conformance data): `scripts/conformance.sh` runs the harness with
//! this file in place of the harness's default one, so that the optional
//! `raw_quotes+skip_unset` cases run too (kiln's heredoc detection uses the
//! lexer that way, as BuildKit does).
use kiln_dockerfile::shell::Lexer;

pub type Pairs<'a> = &'a [(String, String)];

fn env(pairs: Pairs) -> std::collections::HashMap<String, String> {
    pairs.iter().cloned().collect() // later pairs win
}

pub fn process_word(escape: char, word: &str, pairs: Pairs) -> Option<Result<String, String>> {
    let lx = Lexer::new(escape);
    Some(lx.process_word(word, &env(pairs)).map_err(|e| format!("{e:?}")))
}

/// `raw_quotes_skip_unset`: BuildKit's `Lex{RawQuotes: true, SkipUnsetEnv: true}`.
pub fn process_words(
    escape: char,
    word: &str,
    pairs: Pairs,
    raw_quotes_skip_unset: bool,
) -> Option<Result<Vec<String>, String>> {
    let lx = Lexer::new(escape)
        .raw_quotes(raw_quotes_skip_unset)
        .skip_unset_env(raw_quotes_skip_unset);
    Some(lx.process_words(word, &env(pairs)).map_err(|e| format!("{e:?}")))
}
