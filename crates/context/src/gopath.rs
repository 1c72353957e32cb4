//! Go's `path/filepath` functions that `.dockerignore` handling depends on,
//! with their exact (Unix) behaviour: `Clean` and `Match`.
//!
//! Docker cleans every pattern and checks its syntax with
//! `filepath.Match(pattern, ".")`; reproducing both byte for byte is what
//! makes kiln accept and reject the same ignore files as docker.

/// Go's `filepath.Clean` on Unix: the shortest lexically equivalent path.
/// `""` becomes `"."`; a rooted path keeps its `/`; `..` above the root
/// of a rooted path is dropped, above the start of a relative one kept.
pub(crate) fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    // How many leading `..` of a relative path can't be cancelled.
    let mut dotdot = 0;
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.len() > dotdot {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                    dotdot += 1;
                }
            }
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Dir` on Unix: everything but the last element, cleaned.
pub(crate) fn dir(path: &str) -> String {
    let cut = path.rfind('/').map_or(0, |i| i + 1);
    clean(&path[..cut])
}

/// The pattern is malformed (Go's `filepath.ErrBadPattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadPattern;

/// Go's `filepath.Match` on Unix: whether `name` matches the shell pattern,
/// or `BadPattern` when the pattern is malformed (as far as Go notices:
/// the check stops early on a successful match, exactly like Go).
pub(crate) fn matches(mut pattern: &str, mut name: &str) -> Result<bool, BadPattern> {
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing `*` matches the rest unless it has a `/`.
            return Ok(!name.contains('/'));
        }
        let (t, ok, err) = match_chunk(chunk, name);
        if ok && (t.is_empty() || !pattern.is_empty()) {
            name = t;
            continue;
        }
        if let Some(e) = err {
            return Err(e);
        }
        if star {
            // Try skipping i+1 bytes of name (never a `/`).
            let bytes = name.as_bytes();
            let mut i = 0;
            while i < bytes.len() && bytes[i] != b'/' {
                // Go slices bytes; stay on char boundaries like its
                // UTF-8-aware chunks effectively do.
                let next = next_boundary(name, i);
                let (t, ok, err) = match_chunk(chunk, &name[next..]);
                if ok {
                    if pattern.is_empty() && !t.is_empty() {
                        i = next;
                        continue;
                    }
                    name = t;
                    continue 'pattern;
                }
                if let Some(e) = err {
                    return Err(e);
                }
                i = next;
            }
        }
        // Before failing, check the rest of the pattern is well formed.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            if let (_, _, Some(e)) = match_chunk(chunk, "") {
                return Err(e);
            }
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

fn next_boundary(s: &str, i: usize) -> usize {
    let mut j = i + 1;
    while j < s.len() && !s.is_char_boundary(j) {
        j += 1;
    }
    j
}

/// Leading stars, then the chunk up to the next star outside a class.
fn scan_chunk(pattern: &str) -> (bool, &str, &str) {
    let mut p = pattern;
    let mut star = false;
    while let Some(rest) = p.strip_prefix('*') {
        p = rest;
        star = true;
    }
    let b = p.as_bytes();
    let mut in_range = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &p[..i], &p[i..])
}

/// Match one star-free chunk at the start of `s`: (rest, matched, error).
fn match_chunk<'a>(mut chunk: &str, mut s: &'a str) -> (&'a str, bool, Option<BadPattern>) {
    let mut failed = false;
    while let Some(c) = chunk.chars().next() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            '[' => {
                let mut r = '\0';
                if !failed {
                    let ch = s.chars().next().unwrap_or('\0');
                    r = ch;
                    s = &s[ch.len_utf8()..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if let Some(rest) = chunk.strip_prefix('^') {
                    negated = true;
                    chunk = rest;
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if nrange > 0
                        && let Some(rest) = chunk.strip_prefix(']')
                    {
                        chunk = rest;
                        break;
                    }
                    let lo;
                    match get_esc(chunk) {
                        Ok((r, rest)) => {
                            lo = r;
                            chunk = rest;
                        }
                        Err(e) => return ("", false, Some(e)),
                    }
                    let mut hi = lo;
                    if let Some(rest) = chunk.strip_prefix('-') {
                        match get_esc(rest) {
                            Ok((r, rest)) => {
                                hi = r;
                                chunk = rest;
                            }
                            Err(e) => return ("", false, Some(e)),
                        }
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    let ch = s.chars().next().unwrap_or('\0');
                    if ch == '/' {
                        failed = true;
                    }
                    s = &s[ch.len_utf8()..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                let mut lit = c;
                if c == '\\' {
                    chunk = &chunk[1..];
                    match chunk.chars().next() {
                        Some(n) => lit = n,
                        None => return ("", false, Some(BadPattern)),
                    }
                }
                if !failed {
                    let ch = s.chars().next().unwrap_or('\0');
                    if ch != lit {
                        failed = true;
                    }
                    s = &s[ch.len_utf8()..];
                }
                chunk = &chunk[lit.len_utf8()..];
            }
        }
    }
    if failed {
        ("", false, None)
    } else {
        (s, true, None)
    }
}

/// One possibly escaped character of a class, and what follows it.
fn get_esc(chunk: &str) -> Result<(char, &str), BadPattern> {
    let mut c = chunk;
    match c.chars().next() {
        None | Some('-' | ']') => return Err(BadPattern),
        Some('\\') => {
            c = &c[1..];
            if c.is_empty() {
                return Err(BadPattern);
            }
        }
        Some(_) => {}
    }
    let r = c.chars().next().ok_or(BadPattern)?;
    let rest = &c[r.len_utf8()..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((r, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_like_go() {
        for (input, want) in [
            ("", "."),
            ("abc", "abc"),
            ("abc/", "abc"),
            ("a//b/./c/", "a/b/c"),
            ("a/../..", ".."),
            ("../../a", "../../a"),
            ("/../a", "/a"),
            ("/", "/"),
            ("a/b/../../..", ".."),
            ("!a/..", "."),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn dir_like_go() {
        assert_eq!(dir("a/b/c"), "a/b");
        assert_eq!(dir("a"), ".");
        assert_eq!(dir("file/"), "file");
        assert_eq!(dir("/"), "/");
        assert_eq!(dir("/a"), "/");
    }

    // Go's own filepath.Match table, the subset with distinct behaviour.
    #[test]
    fn match_like_go() {
        let ok = |p: &str, n: &str, want: bool| {
            assert_eq!(matches(p, n), Ok(want), "Match({p:?}, {n:?})");
        };
        ok("abc", "abc", true);
        ok("*", "abc", true);
        ok("*c", "abc", true);
        ok("a*", "a", true);
        ok("a*/b", "abc/b", true);
        ok("a*/b", "a/c/b", false);
        ok("a*b*c*d*e*/f", "axbxcxdxe/f", true);
        ok("a*b?c*x", "abxbbxdbxebxczzx", true);
        ok("ab[c]", "abc", true);
        ok("ab[^c]", "abc", false);
        ok("a\\*b", "a*b", true);
        ok("a?b", "a☺b", true);
        ok("a[^a]b", "a☺b", true);
        ok("[a-ζ]*", "α", true);
        ok("*[a-ζ]", "A", false);
        ok("a?b", "a/b", false);
        ok("*x", "xxx", true);
        let bad = |p: &str, n: &str| assert_eq!(matches(p, n), Err(BadPattern), "{p:?}");
        bad("[]a]", "]");
        bad("[-]", "-");
        bad("[x-]", "x");
        bad("[a-b-c]", "a");
        bad("[", "a");
        bad("[^", "a");
        bad("a\\", "a");
        bad("[\\", "a");
        bad("*x[", "xxx");
        // Go stops checking early on a match: "a[" is only noticed later.
        assert_eq!(matches("[", "."), Err(BadPattern));
        assert_eq!(matches("[]", "."), Err(BadPattern));
    }
}
