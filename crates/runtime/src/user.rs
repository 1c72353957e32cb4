//! Resolving `USER` / `-u user[:group]` against the image's `/etc/passwd`
//! and `/etc/group`, the way docker (runc's `GetExecUser`) does.

use crate::error::{Result, RuntimeError};

/// The identity a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (only when the group was not given explicitly:
    /// every group that lists the user by name).
    pub groups: Vec<u32>,
    /// Home directory (for `HOME` when the environment has none).
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.trim().split(':').collect();
        if line.starts_with('#') || f.len() < 4 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or("/"),
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.trim().split(':').collect();
        if line.starts_with('#') || f.len() < 3 {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

/// Resolve `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, …) with the
/// contents of the image's passwd and group files (empty when missing).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let mut out = ExecUser {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
        home: "/".into(),
    };
    let mut matched_name = None;
    if user_part.is_empty() {
        // No user: root, with root's home from passwd (docker's `HOME`).
        if let Some(e) = passwd_entries(passwd).find(|e| e.uid == 0) {
            e.home.clone_into(&mut out.home);
            matched_name = Some(e.name.to_owned());
        }
    } else {
        let numeric = user_part.parse::<u32>().ok();
        let entry = passwd_entries(passwd).find(|e| Some(e.uid) == numeric || e.name == user_part);
        match (entry, numeric) {
            (Some(e), _) => {
                out.uid = e.uid;
                out.gid = e.gid;
                e.home.clone_into(&mut out.home);
                matched_name = Some(e.name.to_owned());
            }
            (None, Some(uid)) => out.uid = uid,
            (None, None) => {
                return Err(RuntimeError::UnknownUser {
                    user: user_part.to_owned(),
                });
            }
        }
    }
    match group_part.filter(|g| !g.is_empty()) {
        Some(g) => {
            let numeric = g.parse::<u32>().ok();
            match (
                group_entries(group).find(|e| Some(e.gid) == numeric || e.name == g),
                numeric,
            ) {
                (Some(e), _) => out.gid = e.gid,
                (None, Some(gid)) => out.gid = gid,
                (None, None) => {
                    return Err(RuntimeError::UnknownGroup {
                        group: g.to_owned(),
                    });
                }
            }
        }
        None => {
            if let Some(name) = &matched_name {
                out.groups = group_entries(group)
                    .filter(|e| e.members.iter().any(|m| m == name))
                    .map(|e| e.gid)
                    .collect();
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken line\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:100::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nusers:x:100:alice\nalice:x:1000:\nwheel:x:10:alice,bob\n";

    fn r(spec: &str) -> Result<ExecUser> {
        resolve(spec, PASSWD, GROUP)
    }

    #[test]
    fn users_and_groups_resolve_like_docker() {
        // No user is uid 0, with its passwd home (runc's GetExecUser).
        let root = r("").unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let alice = r("alice").unwrap();
        assert_eq!(
            (
                alice.uid,
                alice.gid,
                alice.groups.clone(),
                alice.home.as_str()
            ),
            (1000, 1000, vec![100, 10], "/home/alice")
        );
        assert_eq!(r("1000").unwrap(), alice, "by id finds the same entry");
        let explicit = r("alice:wheel").unwrap();
        assert_eq!(
            (explicit.gid, explicit.groups.len()),
            (10, 0),
            "explicit group: no supplementary groups"
        );
        assert_eq!(r("bob:4242").unwrap().gid, 4242);
        let unknown_id = r("4000:4001").unwrap();
        assert_eq!(
            (unknown_id.uid, unknown_id.gid, unknown_id.home.as_str()),
            (4000, 4001, "/")
        );
        assert_eq!(r("4000").unwrap().gid, 0);
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            r("mallory").unwrap_err().to_string(),
            "unable to find user mallory: no matching entries in passwd file"
        );
        assert_eq!(
            r("alice:staff").unwrap_err().to_string(),
            "unable to find group staff: no matching entries in group file"
        );
        assert!(resolve("alice", "", "").is_err(), "no passwd file");
    }
}
