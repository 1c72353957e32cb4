//! Shell-word lexing and variable expansion, with Docker's rules.
//!
//! Instructions that take file names, users, ports, labels… (ADD, COPY, ENV,
//! EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, ONBUILD and some
//! flags) run their arguments through this lexer: `$VAR` and `${VAR…}`
//! expansion, single and double quotes, the Dockerfile's escape character,
//! and (for [`Lexer::process_words`]) splitting on unquoted whitespace. It is
//! not a shell: no command substitution, globbing or arithmetic.
//!
//! Supported forms: `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`,
//! `${VAR:+word}`, `${VAR+word}`, `${VAR:?msg}`, `${VAR?msg}`, `${VAR#pat}`,
//! `${VAR##pat}`, `${VAR%pat}`, `${VAR%%pat}`, `${VAR/pat/repl}` and
//! `${VAR//pat/repl}` (patterns use `*` and `?`).
//!
//! # Example
//!
//! ```
//! use std::collections::HashMap;
//! use kiln_dockerfile::shell::Lexer;
//!
//! let env = HashMap::from([("NAME".to_string(), "a b".to_string())]);
//! let lexer = Lexer::new('\\');
//! assert_eq!(lexer.process_word("x-${NAME:-none}", &env).unwrap(), "x-a b");
//! assert_eq!(lexer.process_words("x $NAME 'c d'", &env).unwrap(), ["x", "a", "b", "c d"]);
//! ```

use std::collections::{BTreeSet, HashMap};

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {reason}")]
pub struct ShellError {
    /// The word as given.
    pub word: String,
    /// What went wrong, e.g. `syntax error: missing '}'`.
    pub reason: String,
}

/// The outcome of [`Lexer::process`]: the expanded word, its fields, and
/// which variables it used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// Expansion and quote removal, no field splitting.
    pub word: String,
    /// The same, split on unquoted whitespace.
    pub words: Vec<String>,
    /// Variables that were referenced and set.
    pub matched: BTreeSet<String>,
    /// Variables that were referenced but not set.
    pub unmatched: BTreeSet<String>,
}

/// A shell-word lexer for one escape character (`\` or `` ` ``).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_process_quotes: bool,
    skip_unset_env: bool,
}

impl Lexer {
    /// A lexer that uses `escape` as its escape character.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Keep quote characters in the output (they still group words).
    #[must_use]
    pub fn raw_quotes(mut self, on: bool) -> Self {
        self.raw_quotes = on;
        self
    }

    /// Keep escape characters in the output.
    #[must_use]
    pub fn raw_escapes(mut self, on: bool) -> Self {
        self.raw_escapes = on;
        self
    }

    /// Treat quotes as ordinary characters.
    #[must_use]
    pub fn skip_process_quotes(mut self, on: bool) -> Self {
        self.skip_process_quotes = on;
        self
    }

    /// Leave references to unset variables as written (`$X`, `${X:-y}`).
    #[must_use]
    pub fn skip_unset_env(mut self, on: bool) -> Self {
        self.skip_unset_env = on;
        self
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expand variables and remove quotes; no field splitting.
    pub fn process_word(
        &self,
        word: &str,
        env: &HashMap<String, String>,
    ) -> Result<String, ShellError> {
        self.process(word, &|k: &str| env.get(k).cloned())
            .map(|e| e.word)
    }

    /// Expand variables, remove quotes and split into fields on unquoted
    /// whitespace (quoted empty strings are dropped, as BuildKit does).
    pub fn process_words(
        &self,
        word: &str,
        env: &HashMap<String, String>,
    ) -> Result<Vec<String>, ShellError> {
        self.process(word, &|k: &str| env.get(k).cloned())
            .map(|e| e.words)
    }

    /// The full result, with `lookup` giving a variable's value if set.
    pub fn process(
        &self,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Expansion, ShellError> {
        let mut chars: Vec<char> = word.chars().collect();
        // Go's text/scanner skips a byte-order mark at the very start.
        if chars.first() == Some(&'\u{feff}') {
            chars.remove(0);
        }
        let mut sw = ShellWord {
            lx: *self,
            chars,
            pos: 0,
            lookup,
            raw_escapes: self.raw_escapes,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        match sw.process_stop_on(None, self.raw_escapes) {
            Ok((result, words)) => Ok(Expansion {
                word: result,
                words,
                matched: sw.matched,
                unmatched: sw.unmatched,
            }),
            Err(reason) => Err(ShellError {
                word: word.to_string(),
                reason,
            }),
        }
    }
}

/// Go's `unicode.IsSpace`.
pub(crate) fn is_go_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    ) || (c > '\u{ff}' && c.is_whitespace())
}

#[derive(Default)]
struct Words {
    word: String,
    done: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if is_go_space(c) {
            if self.in_word && !self.word.is_empty() {
                self.done.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }
    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.done.push(self.word);
        }
        self.done
    }
}

struct ShellWord<'a> {
    lx: Lexer,
    chars: Vec<char>,
    pos: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    raw_escapes: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

type Res<T> = Result<T, String>;

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        let value = (self.lookup)(name);
        if value.is_some() {
            self.matched.insert(name.to_string());
        } else {
            self.unmatched.insert(name.to_string());
        }
        value
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Res<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let out = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> Res<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        let quotes = !self.lx.skip_process_quotes;
        while let Some(c) = self.peek() {
            if stop == Some(c) {
                self.next();
                return Ok((result, words.finish()));
            }
            if c == '$' {
                let tmp = self.process_dollar()?;
                result.push_str(&tmp);
                words.add_string(&tmp);
            } else if quotes && (c == '\'' || c == '"') {
                let tmp = if c == '\'' {
                    self.process_single_quote()?
                } else {
                    self.process_double_quote()?
                };
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else {
                self.next();
                if c == self.lx.escape {
                    if self.raw_escapes {
                        words.add_raw_char(c);
                        result.push(c);
                    }
                    let Some(escaped) = self.next() else { break };
                    words.add_raw_char(escaped);
                    result.push(escaped);
                } else {
                    words.add_char(c);
                    result.push(c);
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Res<String> {
        let mut result = String::new();
        let open = self.next();
        if self.lx.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.lx.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Res<String> {
        let mut result = String::new();
        let open = self.next();
        if self.lx.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.lx.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(c) => {
                    self.next();
                    let mut c = c;
                    if c == self.lx.escape {
                        if self.raw_escapes {
                            result.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lx.escape => {
                                self.next();
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(c);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Res<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            let value = self.get_env(&name);
            return Ok(match value {
                Some(v) => v,
                None if self.lx.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.process_name();
        let first = self.next();
        let mut modifier: String = first.map_or_else(|| "\u{fffd}".into(), String::from);
        match first {
            Some('}') => {
                let value = self.get_env(&name);
                Ok(match value {
                    Some(v) => v,
                    None if self.lx.skip_unset_env => format!("${{{name}}}"),
                    None => String::new(),
                })
            }
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let mut null_is_unset = false;
                let mut op = first.unwrap_or('}');
                if op == ':' {
                    null_is_unset = true;
                    let second = self.next();
                    modifier.extend(second);
                    match second {
                        Some(c @ ('+' | '-' | '?')) => op = c,
                        _ => {
                            return Err(format!(
                                "unsupported modifier ({modifier}) in substitution"
                            ));
                        }
                    }
                }
                let raw = op == '#' || op == '%';
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '}'".into());
                        }
                        return Err(e);
                    }
                };
                let value = self.get_env(&name);
                if self.lx.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let unset = match &value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match op {
                    '-' => Ok(if unset {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if unset { String::new() } else { word }),
                    '?' => {
                        if value.is_none() || unset {
                            let default = if value.is_none() {
                                "is not allowed to be unset"
                            } else {
                                "is not allowed to be empty"
                            };
                            let message = if word.is_empty() { default } else { &word };
                            Err(format!("{name}: {message}"))
                        } else {
                            Ok(value.unwrap_or_default())
                        }
                    }
                    _ => {
                        let (greedy, pattern) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        let value = value.unwrap_or_default();
                        if op == '%' {
                            trim_suffix(&pattern, &value, greedy)
                        } else {
                            trim_prefix(&pattern, &value, greedy)
                        }
                    }
                }
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '/' in ${}".into());
                        }
                        return Err(e);
                    }
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return Err("syntax error: missing '}'".into());
                        }
                        return Err(e);
                    }
                };
                let value = self.get_env(&name);
                if self.lx.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                let value = value.unwrap_or_default();
                let pat = Pattern::compile(&pattern)
                    .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
                Ok(if all {
                    pat.replace_all(&value, &replacement)
                } else {
                    match pat.find(&value, true) {
                        Some((s, e)) => format!("{}{replacement}{}", &value[..s], &value[e..]),
                        None => value,
                    }
                })
            }
            _ => {
                if first.is_none() {
                    modifier = "\u{fffd}".into();
                }
                Err(format!("unsupported modifier ({modifier}) in substitution"))
            }
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && is_go_digit(c) {
                while let Some(d) = self.peek().filter(|d| is_go_digit(*d)) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !c.is_alphabetic() && !is_go_digit(c) && c != '_' {
                break;
            }
            self.next();
            name.push(c);
        }
        name
    }
}

fn is_go_digit(c: char) -> bool {
    c.is_ascii_digit()
        || (!c.is_ascii() && c.is_numeric() && c.to_digit(10).is_none() && {
            // Go's unicode.IsDigit is category Nd; `is_numeric` also covers Nl/No.
            // Without tables, accept the common decimal-digit blocks.
            let u = u32::from(c);
            matches!(u, 0x0660..=0x0669 | 0x06F0..=0x06F9 | 0x0966..=0x096F | 0xFF10..=0xFF19)
        })
}

/// A shell pattern (`*`, `?`, literal characters) as used by `${VAR#pat}`,
/// `${VAR%pat}` and `${VAR/pat/repl}`. `\` escapes `*`, `?` and `\`; `\}` and
/// `\/` stand for `}` and `/`.
#[derive(Debug)]
struct Pattern {
    tokens: Vec<Tok>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Star,
    Any,
    Lit(char),
}

impl Pattern {
    fn compile(pattern: &str) -> Res<Pattern> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' => tokens.push(Tok::Star),
                '?' => tokens.push(Tok::Any),
                '\\' => {
                    if matches!(chars.get(i), Some('}' | '/')) {
                        continue;
                    }
                    match chars.get(i) {
                        Some(&n @ ('*' | '?' | '\\')) => {
                            i += 1;
                            tokens.push(Tok::Lit(n));
                        }
                        Some(&n) => return Err(format!("invalid escape '\\{n}'")),
                        None => return Err("invalid escape '\\\u{fffd}'".into()),
                    }
                }
                _ => tokens.push(Tok::Lit(c)),
            }
        }
        Ok(Pattern { tokens })
    }

    fn reversed(&self) -> Pattern {
        let mut tokens = self.tokens.clone();
        tokens.reverse();
        Pattern { tokens }
    }

    /// Match the pattern at exactly `start` of `text` (chars) and return
    /// where the match ends, preferring longer (`greedy`) or shorter stars —
    /// the same preference order as Go's regexp (leftmost-first).
    fn match_at(&self, text: &[char], start: usize, greedy: bool) -> Option<usize> {
        struct Ctx<'t> {
            toks: &'t [Tok],
            text: &'t [char],
            greedy: bool,
            memo: HashMap<(usize, usize), Option<usize>>,
        }
        fn go(cx: &mut Ctx<'_>, ti: usize, pos: usize) -> Option<usize> {
            let Some(tok) = cx.toks.get(ti).copied() else {
                return Some(pos);
            };
            if let Some(known) = cx.memo.get(&(ti, pos)) {
                return *known;
            }
            let found = match tok {
                Tok::Lit(c) => {
                    if cx.text.get(pos) == Some(&c) {
                        go(cx, ti + 1, pos + 1)
                    } else {
                        None
                    }
                }
                // Go's `.` does not match a newline.
                Tok::Any => match cx.text.get(pos) {
                    Some(c) if *c != '\n' => go(cx, ti + 1, pos + 1),
                    _ => None,
                },
                Tok::Star => {
                    let mut max = pos;
                    while max < cx.text.len() && cx.text[max] != '\n' {
                        max += 1;
                    }
                    let mut found = None;
                    if cx.greedy {
                        for p in (pos..=max).rev() {
                            found = go(cx, ti + 1, p);
                            if found.is_some() {
                                break;
                            }
                        }
                    } else {
                        for p in pos..=max {
                            found = go(cx, ti + 1, p);
                            if found.is_some() {
                                break;
                            }
                        }
                    }
                    found
                }
            };
            cx.memo.insert((ti, pos), found);
            found
        }
        let mut cx = Ctx {
            toks: &self.tokens,
            text,
            greedy,
            memo: HashMap::new(),
        };
        go(&mut cx, 0, start)
    }

    /// Leftmost match in `value` (byte offsets).
    fn find(&self, value: &str, greedy: bool) -> Option<(usize, usize)> {
        let chars: Vec<char> = value.chars().collect();
        let offsets = char_offsets(value);
        (0..=chars.len()).find_map(|s| {
            self.match_at(&chars, s, greedy)
                .map(|e| (offsets[s], offsets[e]))
        })
    }

    /// Go's `Regexp.ReplaceAllString`: `$0`/`${0}` in the replacement is the
    /// match, other `$name`s are empty, `$$` is `$`.
    fn replace_all(&self, value: &str, replacement: &str) -> String {
        let chars: Vec<char> = value.chars().collect();
        let offsets = char_offsets(value);
        let mut out = String::new();
        let mut last = 0; // char index copied up to
        let mut pos = 0;
        let mut prev_end: Option<usize> = None;
        while pos <= chars.len() {
            let Some(end) = self.match_at(&chars, pos, true) else {
                pos += 1;
                continue;
            };
            if end == pos && prev_end == Some(pos) {
                // An empty match right after a previous match is ignored.
                pos += 1;
                continue;
            }
            out.push_str(&value[offsets[last]..offsets[pos]]);
            expand_template(&mut out, replacement, &value[offsets[pos]..offsets[end]]);
            last = end;
            prev_end = Some(end);
            pos = if end > pos { end } else { pos + 1 };
        }
        out.push_str(&value[offsets[last.min(chars.len())]..]);
        out
    }
}

fn char_offsets(s: &str) -> Vec<usize> {
    let mut v: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
    v.push(s.len());
    v
}

fn expand_template(out: &mut String, template: &str, whole: &str) {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (name, after) = if let Some(r) = rest.strip_prefix('{') {
            match r.find('}') {
                Some(j)
                    if j > 0
                        && r[..j]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    (&r[..j], &r[j + 1..])
                }
                _ => {
                    out.push('$');
                    continue;
                }
            }
        } else {
            let n = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if n == 0 {
                out.push('$');
                continue;
            }
            (&rest[..n], &rest[n..])
        };
        if name.chars().all(|c| c.is_ascii_digit()) && name.parse::<u64>().ok() == Some(0) {
            out.push_str(whole);
        }
        rest = after;
    }
    out.push_str(rest);
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Res<String> {
    let pat = Pattern::compile(pattern)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    let chars: Vec<char> = value.chars().collect();
    Ok(match pat.match_at(&chars, 0, greedy) {
        Some(end) => chars[end..].iter().collect(),
        None => value.to_string(),
    })
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Res<String> {
    // Match the reversed pattern against the reversed value from the start.
    let pat = Pattern::compile(pattern)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?
        .reversed();
    let chars: Vec<char> = value.chars().rev().collect();
    Ok(match pat.match_at(&chars, 0, greedy) {
        Some(end) => chars[end..].iter().rev().collect(),
        None => value.to_string(),
    })
}
