//! `--chmod` modes (octal and symbolic) and `--chown` owners (names looked
//! up in the destination's `/etc/passwd` and `/etc/group`).

use std::path::Path;

use super::FileOpError;
use super::view::View;

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// `0755`: the permission bits, whatever the source had.
    Octal(u32),
    /// `u+x,go-w`: applied to each source's own mode.
    Symbolic(Vec<Clause>),
}

/// One clause of a symbolic mode: `who op perms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    who: u32,
    op: char,
    perms: String,
}

impl Chmod {
    /// Parse `0755`, `755`, `u+x`, `a=rX,u+w`, like chmod(1).
    pub fn parse(text: &str) -> Result<Chmod, FileOpError> {
        let bad = || FileOpError::BadChmod {
            value: text.to_owned(),
        };
        if text.is_empty() {
            return Err(bad());
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            let mode = u32::from_str_radix(text, 8).map_err(|_| bad())?;
            if mode > 0o7777 {
                return Err(bad());
            }
            return Ok(Chmod::Octal(mode));
        }
        let mut clauses = Vec::new();
        for part in text.split(',') {
            let op_at = part.find(['+', '-', '=']).ok_or_else(bad)?;
            let (who_text, rest) = part.split_at(op_at);
            let mut who = 0;
            for c in who_text.chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(bad()),
                };
            }
            if who == 0 {
                who = 0o7777;
            }
            // `u+x-w` holds two operations; split them.
            let mut chars = rest.chars().peekable();
            while let Some(op) = chars.next() {
                let mut perms = String::new();
                while let Some(&c) = chars.peek() {
                    if matches!(c, '+' | '-' | '=') {
                        break;
                    }
                    if !matches!(c, 'r' | 'w' | 'x' | 'X' | 's' | 't') {
                        return Err(bad());
                    }
                    perms.push(c);
                    chars.next();
                }
                clauses.push(Clause { who, op, perms });
            }
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode (permission bits and set-id/sticky bits) a file with
    /// `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                let mut mode = mode & 0o7777;
                for clause in clauses {
                    let mut bits = 0;
                    for p in clause.perms.chars() {
                        bits |= match p {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || mode & 0o111 != 0 => 0o111,
                            's' => 0o6000,
                            't' => 0o1000,
                            _ => 0,
                        };
                    }
                    let bits = bits & clause.who;
                    match clause.op {
                        '+' => mode |= bits,
                        '-' => mode &= !bits,
                        _ => mode = (mode & !(clause.who & 0o7777)) | bits,
                    }
                }
                mode
            }
        }
    }
}

/// A user and group id pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Resolve `user[:group]` in `view`'s `/etc/passwd` and `/etc/group`. A
/// numeric user without a group gets the same number as group; a named
/// user without a group gets its primary group. An unknown name is an
/// error (BuildKit would silently use 0).
pub fn resolve_owner(view: &View, user: &str, group: Option<&str>) -> Result<Owner, FileOpError> {
    let (uid, primary) = if let Ok(uid) = user.parse::<u32>() {
        (uid, uid)
    } else {
        let passwd = view
            .read_file(Path::new("/etc/passwd"))?
            .unwrap_or_default();
        let found = String::from_utf8_lossy(&passwd).lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 4 && f[0] == user)
                .then(|| Some((f[2].parse::<u32>().ok()?, f[3].parse::<u32>().ok()?)))
                .flatten()
        });
        found.ok_or_else(|| FileOpError::UnknownUser {
            name: user.to_owned(),
        })?
    };
    let gid = match group {
        None => primary,
        Some(g) => {
            if let Ok(gid) = g.parse::<u32>() {
                gid
            } else {
                let groups = view.read_file(Path::new("/etc/group"))?.unwrap_or_default();
                String::from_utf8_lossy(&groups)
                    .lines()
                    .find_map(|line| {
                        let f: Vec<&str> = line.split(':').collect();
                        (f.len() >= 3 && f[0] == g)
                            .then(|| f[2].parse::<u32>().ok())
                            .flatten()
                    })
                    .ok_or_else(|| FileOpError::UnknownGroup { name: g.to_owned() })?
            }
        }
    };
    Ok(Owner { uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_table() {
        // (mode text, source mode, is_dir, expected)
        let cases: &[(&str, u32, bool, u32)] = &[
            ("755", 0o600, false, 0o755),
            ("0644", 0o777, true, 0o644),
            ("4755", 0o644, false, 0o4755),
            ("u+x", 0o644, false, 0o744),
            ("+x", 0o644, false, 0o755),
            ("go-w", 0o777, false, 0o755),
            ("a=r", 0o755, false, 0o444),
            ("a=rX", 0o644, false, 0o444),
            ("a=rX", 0o744, false, 0o555),
            ("a=rX", 0o600, true, 0o555),
            ("u=rwx,g=rx,o=", 0o000, false, 0o750),
            ("u+x-w", 0o644, false, 0o544),
            ("o+t", 0o755, true, 0o1755),
        ];
        for (text, mode, is_dir, want) in cases {
            let got = Chmod::parse(text).unwrap().apply(*mode, *is_dir);
            assert_eq!(
                got, *want,
                "chmod {text} on {mode:o} (dir: {is_dir}) = {got:o}"
            );
        }
    }

    #[test]
    fn bad_chmod_is_an_error() {
        for text in ["", "99", "77777", "u+q", "z+x", "rwx"] {
            assert!(Chmod::parse(text).is_err(), "{text} was accepted");
        }
    }

    #[test]
    fn owners_resolve_in_the_destination() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:\napp:x:1001:\n",
        )
        .unwrap();
        let view = View::dir(t.path());
        let o = |u: &str, g: Option<&str>| resolve_owner(&view, u, g).map(|o| (o.uid, o.gid));
        assert_eq!(o("app", None).unwrap(), (1000, 1001));
        assert_eq!(o("app", Some("staff")).unwrap(), (1000, 50));
        assert_eq!(o("42", None).unwrap(), (42, 42));
        assert_eq!(o("42", Some("7")).unwrap(), (42, 7));
        assert!(matches!(
            o("nobody", None),
            Err(FileOpError::UnknownUser { .. })
        ));
        assert!(matches!(
            o("0", Some("wheel")),
            Err(FileOpError::UnknownGroup { .. })
        ));
    }
}
