//! The lossless, lenient syntax layer: text → [`SyntaxTree`].
//!
//! This layer does exactly what BuildKit's parser does: it joins continued
//! lines, reads parser directives and heredoc bodies, and splits every
//! instruction into keyword, flags and arguments — and accepts unknown
//! instructions, any number of arguments and unknown flags. Validation is the
//! typed layer's job ([`crate::ir`]).
//!
//! Every node keeps its byte span in the source and its line numbers, and the
//! tree keeps the source, so the text between instructions (comments, blank
//! lines) is recoverable and errors can point at a column.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use pest::Parser as _;
use serde::Serialize;

use crate::error::{Error, Location};
use crate::grammar::{self, DockerfileGrammar, Rule};
use crate::shell::{Lexer, is_go_space};

/// A byte range in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

/// A parser directive (`# syntax=…`, `# escape=…`, `# check=…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// The name, lower case.
    pub name: String,
    /// The raw value.
    pub value: String,
    /// 1-based line.
    pub line: usize,
    /// Where the directive's line is.
    #[serde(skip)]
    pub span: Span,
}

/// A problem the parser tolerates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// What is wrong.
    pub message: String,
    /// 1-based line it was found on.
    pub line: usize,
}

/// A heredoc body attached to a RUN, COPY or ADD line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter, quotes removed.
    pub name: String,
    /// The raw body: lines verbatim with their line endings, no tab stripping.
    pub content: String,
    /// False when any part of the delimiter was quoted: no expansion.
    pub expand: bool,
    /// True for `<<-` (strip leading tabs when used).
    pub chomp: bool,
    /// The file descriptor written before `<<` (0 when absent).
    pub fd: u64,
}

impl Heredoc {
    /// The body as a command or file sees it: with `<<-`, leading tabs are
    /// removed from every line.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        let mut out = String::with_capacity(self.content.len());
        for line in self.content.split_inclusive('\n') {
            out.push_str(line.trim_start_matches('\t'));
        }
        out
    }
}

/// One instruction of the syntax tree (BuildKit's `Node`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The keyword, lower-cased (`run`, or an unknown word).
    pub cmd: String,
    /// Leading `--` words, after quote processing.
    pub flags: Vec<String>,
    /// The arguments exactly as BuildKit's parser produces them.
    pub args: Vec<String>,
    /// Whether the exec (JSON) form was used.
    pub json: bool,
    /// Heredoc bodies, in order.
    pub heredocs: Vec<Heredoc>,
    /// For ONBUILD: the wrapped instruction.
    pub next: Option<Box<Node>>,
    /// The logical line (continuations joined).
    pub original: String,
    /// First line, 1-based (0 for an ONBUILD's inner instruction).
    pub start_line: usize,
    /// Last line including heredoc bodies (0 for an ONBUILD's inner instruction).
    pub end_line: usize,
    /// The comment lines right above the instruction.
    pub comments: Vec<String>,
    /// The keyword as written.
    #[serde(skip)]
    pub keyword: String,
    /// The source bytes of the instruction, heredoc bodies included.
    #[serde(skip)]
    pub span: Span,
    /// Maps offsets in [`Node::original`] back to the source.
    #[serde(skip)]
    pub(crate) segments: Vec<Segment>,
}

/// A piece of a logical line that comes from one physical line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Offset in the logical line.
    pub logical: usize,
    /// Offset in the source.
    pub source: usize,
    /// Length.
    pub len: usize,
}

impl Node {
    /// The source offset of byte `offset` of [`Node::original`].
    pub fn source_offset(&self, offset: usize) -> usize {
        let mut best = self.span.start;
        for seg in &self.segments {
            if offset >= seg.logical {
                best = seg.source + (offset - seg.logical).min(seg.len);
            }
        }
        best
    }

    /// The source span of a piece of [`Node::original`] (found by text),
    /// or of the keyword when the text is not there verbatim.
    pub fn find_span(&self, needle: &str) -> Span {
        let (start, len) =
            if let Some(i) = self.original.find(needle).filter(|_| !needle.is_empty()) {
                (i, needle.len())
            } else {
                let lead = self.original.len() - self.original.trim_start().len();
                (lead, self.keyword.len())
            };
        Span::new(self.source_offset(start), self.source_offset(start) + len)
    }

    /// The span of the keyword.
    pub fn keyword_span(&self) -> Span {
        let lead = self.original.len() - self.original.trim_start().len();
        let start = self.source_offset(lead);
        Span::new(start, start + self.keyword.len())
    }
}

/// A parsed Dockerfile: directives, instructions, warnings, and the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyntaxTree {
    /// The escape character (`\` unless `# escape=` says otherwise).
    pub escape: char,
    /// Parser directives in file order.
    pub directives: Vec<Directive>,
    /// Tolerated problems (empty continuation lines).
    pub warnings: Vec<Warning>,
    /// The instructions.
    pub instructions: Vec<Node>,
    /// The source, as UTF-8 (invalid bytes replaced).
    #[serde(skip)]
    pub source: String,
    /// Byte offset of the start of each line of `source` (for locating
    /// spans in logarithmic time: `kiln check` locates every finding).
    #[serde(skip)]
    line_starts: Vec<usize>,
}

/// The JSON form printed by `kiln parse --json` (schema in the README).
#[derive(Serialize)]
struct JsonTree<'a> {
    escape: String,
    directives: BTreeMap<&'a str, &'a str>,
    warnings: &'a [Warning],
    instructions: &'a [Node],
}

impl SyntaxTree {
    /// The stable JSON form of `kiln parse --json`.
    pub fn to_json(&self) -> String {
        let tree = JsonTree {
            escape: self.escape.to_string(),
            directives: self
                .directives
                .iter()
                .map(|d| (d.name.as_str(), d.value.as_str()))
                .collect(),
            warnings: &self.warnings,
            instructions: &self.instructions,
        };
        serde_json::to_string_pretty(&tree).unwrap_or_default()
    }

    /// BuildKit's `Node.Dump()` s-expression form, one line per instruction.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.instructions {
            let _ = writeln!(out, "({})", dump_node(node));
        }
        out
    }

    /// The value of a directive, if present.
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }

    /// The instruction whose span is exactly `span`, found by binary search
    /// (instructions are in source order and do not overlap), so that
    /// locating many findings in a huge file stays `O(n log n)`.
    pub fn instruction_at(&self, span: Span) -> Option<&Node> {
        let i = self
            .instructions
            .partition_point(|n| n.span.start < span.start);
        self.instructions.get(i).filter(|n| n.span == span)
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.source, offset.min(self.source.len()));
        // Lines starting at or before `offset`: line_starts[0] is 0.
        let line = self.line_starts.partition_point(|s| *s <= offset).max(1);
        let line_start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        (line, self.source[line_start..offset].chars().count() + 1)
    }

    /// Byte offsets of the start and end (line ending excluded) of a 1-based
    /// line; past the last line, the end of the source twice.
    pub(crate) fn line_bounds(&self, line: usize) -> (usize, usize) {
        match self.line_starts.get(line.saturating_sub(1)) {
            Some(&start) if line > 0 => (start, start + self.line_text(line).len()),
            _ => (self.source.len(), self.source.len()),
        }
    }

    /// The text of a 1-based line, without its line ending.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(start) = self.line_starts.get(line.saturating_sub(1)).copied() else {
            return "";
        };
        let rest = &self.source[start..];
        rest.split('\n').next().unwrap_or("").trim_end_matches('\r')
    }

    /// A [`Location`] for a source span.
    pub fn locate(&self, span: Span) -> Location {
        let (line, column) = self.line_col(span.start);
        let end = floor_char_boundary(&self.source, span.end.min(self.source.len()));
        let start = floor_char_boundary(&self.source, span.start.min(end));
        let text = &self.source[start..end];
        let first_line = text.split('\n').next().unwrap_or("");
        Location {
            line,
            column,
            width: first_line.trim_end_matches('\r').chars().count(),
            span,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One instruction in BuildKit's `Node.Dump()` form (without the parentheses).
pub fn dump_node(node: &Node) -> String {
    let mut s = node.cmd.to_lowercase();
    if !node.flags.is_empty() {
        s.push_str(" [");
        let quoted: Vec<String> = node.flags.iter().map(|f| go_quote(f)).collect();
        s.push_str(&quoted.join(" "));
        s.push(']');
    }
    for arg in &node.args {
        s.push(' ');
        s.push_str(&go_quote(arg));
    }
    if let Some(next) = &node.next {
        let _ = write!(s, " ({})", dump_node(next));
    }
    s.trim().to_string()
}

/// Go's `strconv.Quote` (approximately: printability from Rust's tables).
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if !go_is_print(c) => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint`, approximated without Unicode category tables:
/// control, format, separator (except ASCII space), private-use characters
/// are not printable.
fn go_is_print(c: char) -> bool {
    let u = c as u32;
    if u <= 0xff {
        return (0x20..=0x7e).contains(&u) || ((0xa1..=0xff).contains(&u) && u != 0xad);
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(u, 0x0600..=0x0605 | 0x061c | 0x06dd | 0x070f | 0x180e | 0x200b..=0x200f
            | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb
            | 0xe000..=0xf8ff | 0xf0000..))
}

/// Longest physical line BuildKit's scanner accepts (64 KiB buffer).
const MAX_LINE: usize = 65535;

/// Instructions whose arguments may open heredocs.
fn heredoc_capable(cmd: &str) -> bool {
    matches!(cmd, "run" | "copy" | "add")
}

struct Lines<'a> {
    /// (start, end-with-newline) byte offsets of each physical line.
    bounds: Vec<(usize, usize)>,
    src: &'a str,
}

impl<'a> Lines<'a> {
    fn new(src: &'a str) -> Self {
        let mut bounds = Vec::with_capacity(src.len() / 32 + 1);
        let mut start = 0;
        let bytes = src.as_bytes();
        while start < bytes.len() {
            // `str::find` of a char is a memchr, not a loop per byte.
            let end = src[start..]
                .find('\n')
                .map_or(bytes.len(), |i| start + i + 1);
            bounds.push((start, end));
            start = end;
        }
        Lines { bounds, src }
    }

    fn raw(&self, i: usize) -> &'a str {
        let (s, e) = self.bounds[i];
        &self.src[s..e]
    }
}

/// `bytes.TrimRight(line, "\r\n")`.
fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn trim_leading_space(s: &str) -> &str {
    s.trim_start_matches(is_go_space)
}

fn is_comment(s: &str) -> bool {
    trim_leading_space(s).starts_with('#')
}

struct DirectiveState {
    done: bool,
    escape: char,
    seen: Vec<String>,
}

impl DirectiveState {
    /// Look at a line for a directive; returns whether it was one.
    fn process(
        &mut self,
        line: &str,
        lineno: usize,
        span: Span,
        out: &mut Vec<Directive>,
    ) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        let Ok(mut pairs) = DockerfileGrammar::parse(Rule::directive, line) else {
            self.done = true;
            return Ok(false);
        };
        let mut name = String::new();
        let mut value = String::new();
        for p in pairs
            .next()
            .map(pest::iterators::Pair::into_inner)
            .into_iter()
            .flatten()
        {
            match p.as_rule() {
                Rule::directive_name => name = p.as_str().to_ascii_lowercase(),
                Rule::directive_value | Rule::directive_blank_value => {
                    value = p.as_str().to_string();
                }
                _ => {}
            }
        }
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(false);
        }
        if self.seen.contains(&name) {
            return Err(format!("only one {name} parser directive can be used"));
        }
        self.seen.push(name.clone());
        if name == "escape" {
            match value.as_str() {
                "\\" => self.escape = '\\',
                "`" => self.escape = '`',
                _ => {
                    return Err(format!(
                        "invalid escape token '{value}' does not match ` or \\"
                    ));
                }
            }
        }
        out.push(Directive {
            name,
            value,
            line: lineno,
            span,
        });
        Ok(true)
    }
}

/// If `line` continues on the next line, the text without the continuation
/// marker.
fn trim_continuation(line: &str, escape: char) -> Option<&str> {
    // The last non-blank character must be the escape character; the
    // grammar then decides on the tail (the character before it, the
    // escape and the blanks), so the cost does not grow with the line.
    let body = line.trim_end_matches([' ', '\t']);
    let escape_at = body.len().checked_sub(escape.len_utf8())?;
    if !body.ends_with(escape) {
        return None;
    }
    let tail_start = body[..escape_at]
        .char_indices()
        .next_back()
        .map_or(escape_at, |(i, _)| i);
    // Rules `continuation_bs` / `continuation_bt`.
    grammar::continuation(&line[tail_start..], escape).then_some(&line[..escape_at])
}

/// Parse a Dockerfile. Lenient like BuildKit's parser: unknown instructions
/// and flags are kept; only what BuildKit's parser rejects is an error.
pub fn parse(input: &[u8]) -> Result<SyntaxTree, Error> {
    let (tree, mut errors) = parse_recovering(input);
    if errors.is_empty() {
        Ok(tree)
    } else {
        Err(errors.swap_remove(0))
    }
}

/// Parse a Dockerfile without stopping at the first error, for reporting
/// every problem at once (`kiln check`): a logical line BuildKit's parser
/// rejects is reported and left out, and parsing resumes at the next
/// logical line. An unterminated heredoc runs to the end of the file, so it
/// is the last error. Returns the tree of the instructions that parsed and
/// the errors; [`parse`] returns the first of them.
pub fn parse_recovering(input: &[u8]) -> (SyntaxTree, Vec<Error>) {
    // Validating is much faster than the lossy conversion's scan, and
    // gives the same text for valid UTF-8.
    let source = match std::str::from_utf8(input) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(input).into_owned(),
    };
    parse_str(source, input)
}

fn parse_str(source: String, raw: &[u8]) -> (SyntaxTree, Vec<Error>) {
    let lines = Lines::new(&source);
    let mut errors: Vec<Error> = Vec::new();
    // The 64 KiB limit applies to the raw bytes of a line. These errors
    // come first: BuildKit's scanner fails on them before parsing anything.
    let too_long = |n: usize, start: usize| {
        Error::syntax(
            format!("dockerfile line greater than max allowed size of {MAX_LINE}"),
            Location {
                line: n + 1,
                column: 1,
                width: 1,
                span: Span::new(start, start),
            },
            None,
        )
    };
    if source.as_bytes() == raw {
        // Valid UTF-8: the physical lines are the raw lines.
        for (n, &(start, end)) in lines.bounds.iter().enumerate() {
            let len = end - start - usize::from(raw[end - 1] == b'\n');
            if len > MAX_LINE {
                errors.push(too_long(n, start));
            }
        }
    } else {
        let mut start = 0;
        for (n, chunk) in raw.split(|b| *b == b'\n').enumerate() {
            if chunk.len() > MAX_LINE {
                errors.push(too_long(n, start));
            }
            start += chunk.len() + 1;
        }
    }
    let mut st = DirectiveState {
        done: false,
        escape: '\\',
        seen: Vec::new(),
    };
    let mut directives = Vec::new();
    let mut warnings = Vec::new();
    let mut instructions: Vec<Node> = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    #[allow(clippy::many_single_char_names)] // i/n mirror BuildKit's scanner loop
    let n = lines.bounds.len();
    let mut i = 0;
    let err_at = |line: usize, message: String, help: Option<String>| {
        let (s, e) = lines
            .bounds
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or((source.len(), source.len()));
        let text = trim_newline(&source[s..e]);
        Error::syntax(
            message,
            Location {
                line: line.max(1),
                column: 1,
                width: text.chars().count().max(1),
                span: Span::new(s, s + text.len()),
            },
            help,
        )
    };
    while i < n {
        let (line_start, _) = lines.bounds[i];
        let mut raw = lines.raw(i);
        let mut offset = line_start;
        if i == 0 && raw.starts_with('\u{feff}') {
            raw = &raw[3..];
            offset += 3;
        }
        if is_comment(raw) {
            let comment = comment_text(raw);
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment);
            }
        }
        // processLine(strip = true)
        let trimmed = trim_newline(raw);
        let stripped = trim_leading_space(trimmed);
        let lead = trimmed.len() - stripped.len();
        let span = Span::new(offset, offset + trimmed.len());
        // A bad directive is reported; its line is then just a comment.
        let is_directive = st
            .process(stripped, i + 1, span, &mut directives)
            .unwrap_or_else(|m| {
                errors.push(err_at(
                    i + 1,
                    m,
                    Some(
                        "a parser directive may appear once, and `escape` takes `\\` or `` ` ``"
                            .into(),
                    ),
                ));
                false
            });
        if is_directive {
            comments.pop();
        }
        let processed = if is_comment(stripped) { "" } else { stripped };
        i += 1;
        let start_line = i;
        let node_start = offset + lead;
        let mut segments = Vec::new();
        let (first, mut eol) = match trim_continuation(processed, st.escape) {
            Some(t) => (t, false),
            None => (processed, true),
        };
        if eol && first.is_empty() {
            continue;
        }
        let mut logical = String::with_capacity(first.len());
        segments.push(Segment {
            logical: 0,
            source: node_start,
            len: first.len(),
        });
        logical.push_str(first);
        let mut empty_continuation = false;
        while !eol && i < n {
            let (s, _) = lines.bounds[i];
            let raw2 = lines.raw(i);
            i += 1;
            if is_comment(raw2) {
                continue;
            }
            let t = trim_newline(raw2);
            if trim_leading_space(t).is_empty() {
                empty_continuation = true;
                continue;
            }
            let piece = if let Some(p) = trim_continuation(t, st.escape) {
                p
            } else {
                eol = true;
                t
            };
            segments.push(Segment {
                logical: logical.len(),
                source: s,
                len: piece.len(),
            });
            logical.push_str(piece);
        }
        if empty_continuation {
            warnings.push(Warning {
                message: format!("Empty continuation line found in: {logical}"),
                line: i,
            });
        }
        let mut node = match node_from_line(&logical, st.escape) {
            Ok(node) => node,
            Err(m) => {
                // Resume at the next logical line.
                errors.push(err_at(start_line, m.0, m.1));
                comments.clear();
                continue;
            }
        };
        node.comments = std::mem::take(&mut comments);
        node.segments = segments;
        let can_heredoc = {
            let target = if node.cmd == "onbuild" {
                node.next.as_deref().unwrap_or(&node)
            } else {
                &node
            };
            heredoc_capable(&target.cmd) && !target.json
        };
        if can_heredoc && logical.contains("<<") {
            let openers = match heredocs_from_line(&logical) {
                Ok(openers) => openers,
                Err(m) => {
                    errors.push(err_at(start_line, m, None));
                    continue;
                }
            };
            let mut unterminated = false;
            for mut doc in openers {
                let mut terminated = false;
                let mut content = String::new();
                while i < n {
                    let body = lines.raw(i);
                    i += 1;
                    let mut candidate = trim_newline(body);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(body);
                }
                if !terminated {
                    // The body ran to the end of the file: nothing follows.
                    errors.push(err_at(
                        start_line,
                        format!("unterminated heredoc `{}`", doc.name),
                        Some(format!(
                            "end the heredoc with a line that is exactly `{}`",
                            doc.name
                        )),
                    ));
                    unterminated = true;
                    break;
                }
                doc.content = content;
                node.heredocs.push(doc);
            }
            if unterminated {
                continue;
            }
        }
        node.start_line = start_line;
        node.end_line = i;
        let end = lines
            .bounds
            .get(i.saturating_sub(1))
            .map_or(source.len(), |b| b.1);
        node.span = Span::new(node_start, end);
        node.original = logical;
        instructions.push(node);
    }
    // Only when nothing else is wrong: lines that failed are not missing.
    if instructions.is_empty() && errors.is_empty() {
        let line = n.max(1);
        errors.push(err_at(
            line,
            "file with no instructions".into(),
            Some("a Dockerfile needs at least one instruction, usually `FROM`".into()),
        ));
    }
    let line_starts = std::iter::once(0)
        .chain(source.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let tree = SyntaxTree {
        escape: st.escape,
        directives,
        warnings,
        instructions,
        source,
        line_starts,
    };
    (tree, errors)
}

/// BuildKit keeps `TrimSpace(line[1:])` as the comment: the first byte is
/// dropped even when it is indentation.
fn comment_text(raw: &str) -> String {
    let bytes = &raw.as_bytes()[1.min(raw.len())..];
    String::from_utf8_lossy(bytes)
        .trim_matches(is_go_space)
        .to_string()
}

/// An error message and an optional help text.
struct LineError(String, Option<String>);

/// `newNodeFromLine`: keyword, flags, and the per-instruction argument parser.
fn node_from_line(line: &str, escape: char) -> Result<Node, LineError> {
    let trimmed = line.trim_matches(is_go_space);
    // Rule `instruction`; pest itself for a line the rule may reject (its
    // error message).
    let (keyword, rest) = match grammar::instruction(trimmed) {
        Some(head) => head,
        None => instruction_head(trimmed)?,
    };
    let cmd = if keyword.is_ascii() {
        keyword.to_ascii_lowercase()
    } else {
        keyword.to_lowercase()
    };
    let (args_text, flags) = extract_flags(rest);
    let args_text = args_text.trim_matches(is_go_space);
    let (args, json, next) = match cmd.as_str() {
        "add" | "copy" | "volume" => {
            let (a, j) = maybe_json_to_list(args_text)?;
            (a, j, None)
        }
        "run" | "cmd" | "entrypoint" | "shell" => {
            let (a, j) = maybe_json(args_text)?;
            (a, j, None)
        }
        "from" | "expose" => (split_ws(args_text), false, None),
        "healthcheck" => {
            let (a, j) = health_config(args_text)?;
            (a, j, None)
        }
        "env" => (name_val(args_text, "ENV", escape)?, false, None),
        "label" => (name_val(args_text, "LABEL", escape)?, false, None),
        "arg" => (parse_words(args_text, escape), false, None),
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            let a = if args_text.is_empty() {
                vec![]
            } else {
                vec![args_text.to_string()]
            };
            (a, false, None)
        }
        "onbuild" => {
            if args_text.is_empty() {
                (vec![], false, None)
            } else {
                let mut child = node_from_line(args_text, escape)?;
                child.original = args_text.to_string();
                (vec![], false, Some(Box::new(child)))
            }
        }
        _ => (vec![String::new()], false, None),
    };
    Ok(Node {
        cmd,
        flags,
        args,
        json,
        heredocs: Vec::new(),
        next,
        // Set by the caller, which owns the logical line.
        original: String::new(),
        start_line: 0,
        end_line: 0,
        comments: Vec::new(),
        keyword: keyword.to_string(),
        span: Span::default(),
        segments: Vec::new(),
    })
}

/// Rule `instruction` run by pest: the keyword and the rest.
fn instruction_head(trimmed: &str) -> Result<(&str, &str), LineError> {
    let pairs = DockerfileGrammar::parse(Rule::instruction, trimmed)
        .map_err(|e| LineError(format!("cannot parse instruction: {e}"), None))?;
    let mut head = ("", "");
    for p in pairs.flatten() {
        match p.as_rule() {
            Rule::keyword => head.0 = p.as_str(),
            Rule::rest => head.1 = p.as_str(),
            _ => {}
        }
    }
    Ok(head)
}

/// Go's `unicode.IsSpace(rune(b))` for a single byte.
fn is_space_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0x85 | 0xa0)
}

/// BuildKit's `extractBuilderFlags`: leading `--` words, scanned byte by
/// byte (so non-ASCII text is re-encoded as Latin-1, as BuildKit does).
/// Returns the remaining text and the flags.
fn extract_flags(line: &str) -> (Cow<'_, str>, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let b = line.as_bytes();
    let mut words: Vec<String> = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = 0u8;
    let mut blank_ok = false;
    // `pos` may be inside a character (0x85 and 0xA0 count as spaces).
    let rest_from = |pos: usize| match std::str::from_utf8(&b[pos..]) {
        Ok(rest) => Cow::Borrowed(rest),
        Err(_) => String::from_utf8_lossy(&b[pos..]),
    };
    let mut pos = 0;
    while pos <= b.len() {
        let ch = if pos < b.len() { b[pos] } else { 0 };
        if phase == Phase::Spaces {
            if pos == b.len() {
                break;
            }
            if is_space_byte(ch) {
                pos += 1;
                continue;
            }
            if ch != b'-' || pos + 1 == b.len() || b[pos + 1] != b'-' {
                return (rest_from(pos), words);
            }
            phase = Phase::Word;
        }
        if pos == b.len() {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(std::mem::take(&mut word));
            }
            break;
        }
        if phase == Phase::Word {
            if is_space_byte(ch) {
                phase = Phase::Spaces;
                if word == "--" {
                    return (rest_from(pos), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(word.clone());
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            let mut c = ch;
            if c == b'\\' {
                if pos + 1 == b.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                c = b[pos];
            }
            word.push(char::from(c));
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        let mut c = ch;
        if c == b'\\' {
            if pos + 1 == b.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            c = b[pos];
        }
        word.push(char::from(c));
        pos += 1;
    }
    (Cow::Borrowed(""), words)
}

/// Split on BuildKit's `[\t\v\f\r ]+`; empty text gives no items.
fn split_ws(text: &str) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    text.split([' ', '\t', '\u{b}', '\u{c}', '\r'])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Split once on `[\t\v\f\r ]+`.
fn split_ws_once(text: &str) -> Option<(&str, &str)> {
    let i = text.find([' ', '\t', '\u{b}', '\u{c}', '\r'])?;
    let after = text[i..].trim_start_matches([' ', '\t', '\u{b}', '\u{c}', '\r']);
    Some((&text[..i], after))
}

enum JsonArgs {
    Strings(Vec<String>),
    NotStrings,
    NotJson,
}

fn parse_json(text: &str) -> JsonArgs {
    let text = text.trim_start_matches(is_go_space);
    if !text.starts_with('[') {
        return JsonArgs::NotJson;
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(text) {
        Ok(values) => {
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return JsonArgs::NotStrings,
                }
            }
            JsonArgs::Strings(out)
        }
        Err(_) => JsonArgs::NotJson,
    }
}

fn not_string_array() -> LineError {
    LineError(
        "when using JSON array syntax, arrays must be comprised of strings only".into(),
        Some("quote every element: [\"executable\", \"arg\"]".into()),
    )
}

fn maybe_json(text: &str) -> Result<(Vec<String>, bool), LineError> {
    if text.is_empty() {
        return Ok((vec![], false));
    }
    match parse_json(text) {
        JsonArgs::Strings(v) => Ok((v, true)),
        JsonArgs::NotStrings => Err(not_string_array()),
        JsonArgs::NotJson => Ok((vec![text.to_string()], false)),
    }
}

fn maybe_json_to_list(text: &str) -> Result<(Vec<String>, bool), LineError> {
    match parse_json(text) {
        JsonArgs::Strings(v) => Ok((v, true)),
        JsonArgs::NotStrings => Err(not_string_array()),
        JsonArgs::NotJson => Ok((split_ws(text), false)),
    }
}

fn health_config(text: &str) -> Result<(Vec<String>, bool), LineError> {
    let b = text.as_bytes();
    let sep = b.iter().position(|c| is_space_byte(*c)).unwrap_or(b.len());
    if sep == 0 {
        return Ok((vec![], false));
    }
    let next = b[sep..]
        .iter()
        .position(|c| !is_space_byte(*c))
        .map_or(b.len(), |i| sep + i);
    let typ = String::from_utf8_lossy(&b[..sep]).into_owned();
    let rest = String::from_utf8_lossy(&b[next..]).into_owned();
    let (cmd, json) = maybe_json(&rest)?;
    let mut args = vec![typ];
    args.extend(cmd);
    Ok((args, json))
}

/// BuildKit's `parseWords`: words separated by Unicode whitespace, quotes
/// and escapes kept.
pub(crate) fn parse_words(text: &str, escape: char) -> Vec<String> {
    if let Some(words) = grammar::plain_words(text, escape) {
        return words;
    }
    let mut input = String::with_capacity(text.len() + 1);
    input.push(escape);
    input.push_str(text);
    let Ok(pairs) = DockerfileGrammar::parse(Rule::words, &input) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for p in pairs.flatten() {
        match p.as_rule() {
            Rule::word => out.push(p.as_str().to_string()),
            // Only at the very end of the input, so inside the last word.
            Rule::trailing_escape => {
                if let Some(last) = out.last_mut() {
                    last.truncate(last.len() - escape.len_utf8());
                }
            }
            _ => {}
        }
    }
    out
}

fn name_val(text: &str, key: &str, escape: char) -> Result<Vec<String>, LineError> {
    let words = parse_words(text, escape);
    let Some(first) = words.first() else {
        return Ok(vec![]);
    };
    if !first.contains('=') {
        let Some((k, v)) = split_ws_once(text) else {
            return Err(LineError(
                format!("{key} must have two arguments"),
                Some(format!("write `{key} name=value`")),
            ));
        };
        return Ok(vec![k.to_string(), v.to_string(), String::new()]);
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for word in &words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(LineError(
                format!(
                    "Syntax error - can't find = in {}. Must be of the form: name=value",
                    go_quote(word)
                ),
                Some(format!(
                    "every word of {key} must be `name=value`; quote values that contain spaces"
                )),
            ));
        };
        out.push(k.to_string());
        out.push(v.to_string());
        out.push("=".to_string());
    }
    Ok(out)
}

/// `heredocsFromLine`: the line's words (raw lexing), those that open a heredoc.
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let lexer = Lexer::new('\\')
        .raw_quotes(true)
        .raw_escapes(true)
        .skip_unset_env(true);
    let words = lexer
        .process(line, &|_| None)
        .map(|e| e.words)
        .unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// A heredoc opener such as `<<EOF`, `<<-"EOF"`, `3<<'x'`, or `None`.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    // Rule `heredoc_opener` needs a `<<`: most words of a line are not
    // openers, and a failed pest call (its error value) is the dearest kind.
    if !word.contains("<<") {
        return Ok(None);
    }
    let Ok(pairs) = DockerfileGrammar::parse(Rule::heredoc_opener, word) else {
        return Ok(None);
    };
    let (mut fd, mut chomp, mut rest) = (0u64, false, "");
    for p in pairs.flatten() {
        match p.as_rule() {
            Rule::heredoc_fd => {
                let digits = p.as_str();
                fd = if digits.is_empty() {
                    0
                } else {
                    digits.parse().unwrap_or(u64::MAX)
                };
            }
            Rule::heredoc_chomp => chomp = p.as_str() == "-",
            Rule::heredoc_word => rest = p.as_str(),
            _ => {}
        }
    }
    if rest.is_empty() {
        return Ok(None);
    }
    let lexer = Lexer::new('\\').skip_unset_env(true);
    let words = lexer
        .process(rest, &|_| None)
        .map_err(|e| e.to_string())?
        .words;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = lexer
        .raw_quotes(true)
        .process(rest, &|_| None)
        .map_err(|e| e.to_string())?
        .words;
    if raw.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    Ok(Some(Heredoc {
        name: words[0].clone(),
        content: String::new(),
        expand: quotes(&words[0]) == quotes(&raw[0]),
        chomp,
        fd,
    }))
}
