//! `.dockerignore` files with Docker's exact semantics (moby/patternmatcher
//! and its `ignorefile` reader), so that a context excludes exactly what
//! `docker build` excludes.
//!
//! Reading (`ignorefile.ReadAll`): a UTF-8 BOM is dropped; a line that
//! starts with `#` is a comment (before trimming: `  #x` is a pattern);
//! lines are trimmed, blank ones skipped; `!` marks a re-include; each
//! pattern is cleaned like Go's `filepath.Clean` and one leading `/` is
//! dropped.
//!
//! Matching (`MatchesOrParentMatches`): a path is excluded when the last
//! rule that matches the path *or one of its parent directories* is not a
//! `!` rule. `*` and `?` never match `/`; `**` matches any number of
//! directories (a `**/` prefix also matches none); `[...]` classes and
//! `\` escapes as in Go's `filepath.Match`. Docker compiles each pattern
//! to a regular expression; kiln does the same, rule by rule, because
//! several of docker's forms (`a**b`, `**` inside a component, a trailing
//! `**` as a plain prefix) have no equivalent in gitignore or `globset`
//! syntax.

use std::fmt;
use std::path::Path;

use regex::Regex;

use crate::gopath;

/// A rule of an ignore file that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: invalid pattern `{pattern}`: {reason}")]
pub struct PatternError {
    /// The ignore file, as given.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The line's pattern (trimmed).
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// How one rule decides a match (patternmatcher's match types).
#[derive(Debug, Clone)]
enum Kind {
    /// No glob syntax: the path equals the pattern.
    Exact,
    /// `lit/**`: the path starts with `lit/` (the pattern minus `**`).
    Prefix(String),
    /// `**/lit`: the path ends with `/lit`, or is `lit`.
    Suffix(String),
    /// Everything else.
    Regex(Regex),
}

/// One rule of an ignore file.
#[derive(Debug, Clone)]
pub struct Rule {
    line: usize,
    text: String,
    exclusion: bool,
    cleaned: String,
    kind: Kind,
}

impl Rule {
    /// The 1-based line of the ignore file it came from (for rules made
    /// with [`Matcher::from_patterns`], its 1-based index).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The rule as docker sees it after reading: trimmed, cleaned, with
    /// its `!` if it re-includes (`!docs/README.md`).
    pub fn pattern(&self) -> &str {
        &self.text
    }

    /// Whether this is a `!` rule (it re-includes what it matches).
    pub fn is_reinclude(&self) -> bool {
        self.exclusion
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|bare| path == bare)
            }
            Kind::Regex(re) => re.is_match(path),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What the rules say about one path.
#[derive(Debug, Clone)]
pub struct Verdict<'a> {
    /// Whether the path is left out of the context.
    pub excluded: bool,
    /// The rule that decided: the last rule that matched the path or a
    /// parent of it (an exclude rule when `excluded`, a `!` rule when a
    /// re-include won). `None` when no rule matched.
    pub rule: Option<&'a Rule>,
    /// When the deciding rule matched a parent directory rather than the
    /// path itself: that directory.
    pub parent: Option<String>,
}

/// The compiled rules of one ignore file. Cheap to share between threads.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    file: String,
    rules: Vec<Rule>,
}

impl Matcher {
    /// No rules: nothing is excluded.
    pub fn empty() -> Matcher {
        Matcher::default()
    }

    /// Read an ignore file's text, as docker reads `.dockerignore`.
    /// `file` names it in errors and in [`Matcher::file`].
    pub fn parse(file: impl Into<String>, text: &[u8]) -> Result<Matcher, PatternError> {
        let file = file.into();
        let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            // Go's line scanner drops one `\r` before the newline.
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.starts_with(b"#") {
                continue;
            }
            let Ok(line) = std::str::from_utf8(raw) else {
                return Err(PatternError {
                    file,
                    line: i + 1,
                    pattern: String::from_utf8_lossy(raw).trim().to_owned(),
                    reason: "not valid UTF-8".to_owned(),
                });
            };
            let mut pattern = line.trim_matches(go_space);
            if pattern.is_empty() {
                continue;
            }
            let invert = pattern.starts_with('!');
            if invert {
                pattern = pattern[1..].trim_matches(go_space);
            }
            let mut cleaned = String::new();
            if !pattern.is_empty() {
                cleaned = gopath::clean(pattern);
                if cleaned.len() > 1 && cleaned.starts_with('/') {
                    cleaned.remove(0);
                }
            }
            if invert {
                cleaned.insert(0, '!');
            }
            patterns.push((i + 1, cleaned));
        }
        Matcher::compile(file, patterns)
    }

    /// Rules from patterns given directly (patternmatcher's `New`, without
    /// the ignore-file reading step). Line numbers are 1-based indexes.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Matcher, PatternError> {
        let list = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| (i + 1, p.as_ref().to_owned()))
            .collect();
        Matcher::compile("<patterns>".to_owned(), list)
    }

    fn compile(file: String, patterns: Vec<(usize, String)>) -> Result<Matcher, PatternError> {
        let mut rules = Vec::with_capacity(patterns.len());
        for (line, p) in patterns {
            let p = p.trim_matches(go_space);
            if p.is_empty() {
                continue;
            }
            let error = |reason: &str| PatternError {
                file: file.clone(),
                line,
                pattern: p.to_owned(),
                reason: reason.to_owned(),
            };
            let text = gopath::clean(p);
            let (exclusion, cleaned) = match text.strip_prefix('!') {
                Some("") => return Err(error("`!` alone re-includes nothing")),
                Some(rest) => (true, rest.to_owned()),
                None => (false, text.clone()),
            };
            if gopath::matches(&cleaned, ".").is_err() {
                return Err(error(
                    "malformed pattern (an unclosed or empty `[...]`, a bad range, or a trailing `\\`)",
                ));
            }
            let kind = compile_kind(&cleaned).map_err(|e| error(&e))?;
            rules.push(Rule {
                line,
                text,
                exclusion,
                cleaned,
                kind,
            });
        }
        Ok(Matcher { file, rules })
    }

    /// The name of the ignore file these rules came from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule is a `!` re-include.
    pub fn has_reincludes(&self) -> bool {
        self.rules.iter().any(|r| r.exclusion)
    }

    /// Decide `path` (slash-separated, relative to the context root; it
    /// need not exist). `.` (the root) is never excluded.
    pub fn verdict(&self, path: &str) -> Verdict<'_> {
        let file = gopath::clean(path);
        let mut verdict = Verdict {
            excluded: false,
            rule: None,
            parent: None,
        };
        if file == "." || self.rules.is_empty() {
            return verdict;
        }
        let parent = gopath::dir(&file);
        let parents: Vec<&str> = parent.split('/').collect();
        for rule in &self.rules {
            // An include can't change an excluded path and vice versa.
            if rule.exclusion != verdict.excluded {
                continue;
            }
            let mut hit = rule.matches(&file);
            let mut via = None;
            if !hit && parent != "." {
                let mut prefix = String::new();
                for (i, dir) in parents.iter().enumerate() {
                    if i > 0 {
                        prefix.push('/');
                    }
                    prefix.push_str(dir);
                    if rule.matches(&prefix) {
                        hit = true;
                        via = Some(prefix);
                        break;
                    }
                }
            }
            if hit {
                verdict = Verdict {
                    excluded: !rule.exclusion,
                    rule: Some(rule),
                    parent: via,
                };
            }
        }
        verdict
    }

    /// Whether `path` (relative to the context root) is excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        self.verdict(path).excluded
    }

    /// [`Matcher::is_excluded`] for a relative `Path`.
    pub fn is_excluded_path(&self, path: &Path) -> bool {
        self.is_excluded(&path.to_string_lossy())
    }

    /// Whether a `!` rule could re-include something below directory
    /// `dir` (relative). A walk skips an excluded directory when this is
    /// false. Conservative: may say true when nothing below is included.
    pub fn may_reinclude_below(&self, dir: &str) -> bool {
        let dir_parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
        self.rules.iter().filter(|r| r.exclusion).any(|r| {
            for (pat, d) in r.cleaned.split('/').zip(&dir_parts) {
                // `**` matches any number of directories: whatever comes
                // after it may match deeper down.
                if pat.contains("**") {
                    return true;
                }
                if !(pat.contains(['*', '?', '[', '\\']) || pat == *d) {
                    return false;
                }
            }
            true
        })
    }

    /// The [`Ancestry`] of directory `dir` (clean, relative; empty or `.`
    /// for the root), for a walk that starts there.
    pub(crate) fn ancestry_of(&self, dir: &str) -> Ancestry {
        let mut ancestry = Ancestry::default();
        if dir.is_empty() || dir == "." || self.rules.is_empty() {
            return ancestry;
        }
        let mut end = 0;
        for part in dir.split('/') {
            end += part.len();
            let (_, own) = self.walk_verdict(&dir[..end], &ancestry, true);
            ancestry = own.unwrap_or_default();
            end += 1;
        }
        ancestry
    }

    /// [`Matcher::is_excluded`] for a walk, which knows the parent's
    /// [`Ancestry`]: `path` (clean, relative, not `.`) is matched against
    /// each rule once, its parents' matches come from `parent` (use
    /// [`Ancestry::default`] for an entry of the root). For a directory
    /// (`dir`), also returns its own ancestry, for its entries.
    pub(crate) fn walk_verdict(
        &self,
        path: &str,
        parent: &Ancestry,
        dir: bool,
    ) -> (bool, Option<Ancestry>) {
        let mut excluded = false;
        let mut own = dir.then(|| Ancestry::sized(self.rules.len()));
        for (i, rule) in self.rules.iter().enumerate() {
            // As in `verdict`: an include can't change an excluded path
            // and vice versa; a directory's ancestry needs every rule.
            let decides = rule.exclusion == excluded;
            if !decides && own.is_none() {
                continue;
            }
            let hit = parent.has(i) || rule.matches(path);
            if hit {
                if let Some(own) = own.as_mut() {
                    own.set(i);
                }
                if decides {
                    excluded = !rule.exclusion;
                }
            }
        }
        (excluded, own)
    }
}

/// Which rules match a directory or one of its parents (a bit per rule),
/// carried down a walk so that an entry's parents are never matched again
/// (see `Matcher::walk_verdict`). The default is the root's: none.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ancestry {
    bits: Vec<u64>,
}

impl Ancestry {
    fn sized(rules: usize) -> Ancestry {
        Ancestry {
            bits: vec![0; rules.div_ceil(64)],
        }
    }

    fn has(&self, rule: usize) -> bool {
        self.bits
            .get(rule / 64)
            .is_some_and(|w| w & (1 << (rule % 64)) != 0)
    }

    fn set(&mut self, rule: usize) {
        if let Some(w) = self.bits.get_mut(rule / 64) {
            *w |= 1 << (rule % 64);
        }
    }
}

/// Go's `unicode.IsSpace` over what `strings.TrimSpace` trims.
fn go_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{85}' | '\u{A0}'
    ) || c.is_whitespace()
}

/// patternmatcher's `compile`, on Unix: the match type and, for the
/// general case, the regular expression docker builds (translated from
/// Go's regex dialect to Rust's by [`go_regex_to_rust`]).
fn compile_kind(pattern: &str) -> Result<Kind, String> {
    #[derive(PartialEq)]
    enum T {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut re = String::from("^");
    let mut kind = T::Exact;
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut index = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        if ch == '*' {
            if chars.get(i) == Some(&'*') {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    if kind == T::Exact {
                        kind = T::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = T::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = T::Regex;
                }
                if index == 0 {
                    kind = T::Suffix;
                }
            } else {
                re.push_str("[^/]*");
                kind = T::Regex;
            }
        } else if ch == '?' {
            re.push_str("[^/]");
            kind = T::Regex;
        } else if ".+()|{}$".contains(ch) {
            re.push('\\');
            re.push(ch);
        } else if ch == '\\' {
            if let Some(&next) = chars.get(i) {
                i += 1;
                re.push('\\');
                re.push(next);
                kind = T::Regex;
            } else {
                re.push('\\');
            }
        } else if ch == '[' || ch == ']' {
            re.push(ch);
            kind = T::Regex;
        } else {
            re.push(ch);
        }
        index += 1;
    }
    Ok(match kind {
        T::Exact => Kind::Exact,
        T::Prefix => Kind::Prefix(pattern[..pattern.len() - 2].to_owned()),
        T::Suffix => Kind::Suffix(pattern[2..].to_owned()),
        T::Regex => {
            re.push('$');
            let rust = go_regex_to_rust(&re);
            Kind::Regex(Regex::new(&rust).map_err(|e| {
                match e {
                    regex::Error::Syntax(s) => s
                        .lines()
                        .last()
                        .unwrap_or("invalid regular expression")
                        .trim_start_matches("error: ")
                        .to_owned(),
                    other => other.to_string(),
                }
            })?)
        }
    })
}

/// POSIX class names both Go's and Rust's regex syntax know (`[[:alpha:]]`).
const POSIX_CLASSES: [&str; 14] = [
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

/// Rewrite a Go (RE2) regular expression so that Rust's `regex` reads it
/// the same way. They differ inside bracket classes, where Rust gives `[`
/// (a nested class), `&&`, `--` and `~~` (set operations) meanings that Go
/// does not, and in a bare `]`, which Go reads as a literal.
fn go_regex_to_rust(go: &str) -> String {
    let chars: Vec<char> = go.chars().collect();
    let mut out = String::with_capacity(go.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        if ch == '\\' {
            out.push(ch);
            if let Some(&next) = chars.get(i) {
                out.push(next);
                i += 1;
            }
            continue;
        }
        if !in_class {
            match ch {
                '[' => {
                    in_class = true;
                    out.push('[');
                    if chars.get(i) == Some(&'^') {
                        out.push('^');
                        i += 1;
                    }
                    // A `]` first in a class is a literal.
                    if chars.get(i) == Some(&']') {
                        out.push_str("\\]");
                        i += 1;
                    }
                }
                ']' => out.push_str("\\]"),
                _ => out.push(ch),
            }
            continue;
        }
        match ch {
            ']' => {
                in_class = false;
                out.push(']');
            }
            '[' => {
                // `[:name:]` is a POSIX class in both dialects.
                let rest: String = chars[i..].iter().collect();
                let posix = rest.strip_prefix(':').and_then(|r| {
                    let r = r.strip_prefix('^').unwrap_or(r);
                    POSIX_CLASSES
                        .iter()
                        .find(|name| r.strip_prefix(*name).is_some_and(|t| t.starts_with(":]")))
                });
                match posix {
                    Some(_) => {
                        let end = rest.find(":]").map_or(0, |e| e + 2);
                        out.push('[');
                        out.push_str(&rest[..end]);
                        i += rest[..end].chars().count();
                    }
                    None => out.push_str("\\["),
                }
            }
            '&' | '~' => {
                out.push('\\');
                out.push(ch);
            }
            '-' if chars.get(i) == Some(&'-') => {
                // `a--b`: Go reads a range ending in `-`; Rust a difference.
                out.push_str("-\\-");
                i += 1;
            }
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert!(matches!(compile_kind("a/b").unwrap(), Kind::Exact));
        assert!(matches!(compile_kind("a/**").unwrap(), Kind::Prefix(p) if p == "a/"));
        assert!(matches!(compile_kind("**/a").unwrap(), Kind::Suffix(s) if s == "/a"));
        assert!(matches!(compile_kind("**").unwrap(), Kind::Suffix(s) if s.is_empty()));
        assert!(
            matches!(compile_kind("a**b").unwrap(), Kind::Regex(r) if r.as_str() == "^a(.*/)?b$")
        );
    }
}
