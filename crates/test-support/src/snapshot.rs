//! Normalized image snapshots: what an image *is*, with the accidents of how
//! it was built (timestamps, layer boundaries, compression, digests) left out.
//!
//! The Dockerfile corpus in `testdata/build/` compares images built by kiln
//! with images built by BuildKit. Both sides go through the same code here:
//! a docker archive (`docker save`, `kiln save --format docker`) is read, its
//! layers applied in order in memory (whiteouts and opaque directories
//! honoured, hard links resolved to their target's content), and the result
//! is described as
//!
//! - `config`: the image config fields a Dockerfile sets (Env, Cmd,
//!   Entrypoint, WorkingDir, User, ExposedPorts, Volumes, Labels,
//!   Healthcheck, StopSignal, OnBuild, Shell, and the Author MAINTAINER sets),
//!   absent fields left out;
//! - `filesystem`: every entry that is not exactly the same entry at the same
//!   path of the base root file system (path, type, mode, owner, size, sha256
//!   of the content or the link target), sorted by path;
//! - `removed`: base paths that are gone, only the topmost of each removed
//!   subtree (so a scratch image lists `/bin`, not every busybox applet).
//!
//! Diffing against the base keeps the snapshots independent of the busybox
//! version a machine has: the base is made on each machine from its own
//! busybox ([`crate::busybox_rootfs_tar`]), the same for both sides.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use kiln_oci::Digest;
use kiln_oci::compress::decompress;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The config fields a snapshot keeps, in docker's spelling.
pub const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "Healthcheck",
    "StopSignal",
    "OnBuild",
    "Shell",
];

/// Files up to this size that are UTF-8 are shown in snapshots as text.
pub const TEXT_LIMIT: usize = 256;

/// One file system entry, as a snapshot lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Absolute path (`/etc/passwd`).
    pub path: String,
    /// `dir`, `file`, `symlink`, `char`, `block` or `fifo`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Permission bits with setuid/setgid/sticky, four octal digits.
    pub mode: String,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Content length of a regular file (0 for the rest).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// sha256 of a regular file's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The content of a small text file (up to [`TEXT_LIMIT`] bytes of
    /// UTF-8), so snapshots can be read and their diffs say what changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A symlink's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `major:minor` of a device node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if signature
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A normalized image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Where the expected snapshot came from (filled by whoever writes it:
    /// the regeneration script or a person); not compared.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reference: String,
    /// Selected config fields.
    pub config: BTreeMap<String, Value>,
    /// Entries that differ from the base, by path.
    pub filesystem: Vec<Entry>,
    /// Topmost base paths that are gone.
    pub removed: Vec<String>,
}

/// Errors while reading an image for a snapshot.
#[derive(Debug)]
pub struct SnapshotError(pub String);

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SnapshotError {}

fn err(msg: impl Into<String>) -> SnapshotError {
    SnapshotError(msg.into())
}

type Result<T> = std::result::Result<T, SnapshotError>;

/// A root file system held in memory: path (`/a/b`, root is `/`) → node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    nodes: BTreeMap<String, Entry>,
}

fn root_entry() -> Entry {
    Entry {
        path: "/".to_owned(),
        kind: "dir".to_owned(),
        mode: "0755".to_owned(),
        uid: 0,
        gid: 0,
        size: 0,
        sha256: None,
        text: None,
        target: None,
        device: None,
    }
}

/// `./a//b/` → `/a/b`; `None` for paths with `..` (never in a sane layer).
fn clean(path: &str) -> Option<String> {
    let mut out = String::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => {
                out.push('/');
                out.push_str(p);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

fn under(prefix: &str) -> String {
    if prefix == "/" {
        "/".to_owned()
    } else {
        format!("{prefix}/")
    }
}

impl Tree {
    /// An empty tree (only `/`).
    pub fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert("/".to_owned(), root_entry());
        Self { nodes }
    }

    /// The entries, sorted by path.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.nodes.values()
    }

    /// The entry at `path` (absolute, clean).
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.nodes.get(path)
    }

    /// Paths strictly below `dir`.
    fn descendants(&self, dir: &str) -> Vec<String> {
        let prefix = under(dir);
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .filter(|k| k != dir)
            .collect()
    }

    fn remove_tree(&mut self, path: &str) {
        for d in self.descendants(path) {
            self.nodes.remove(&d);
        }
        if path != "/" {
            self.nodes.remove(path);
        }
    }

    fn ensure_parents(&mut self, path: &str) {
        let mut missing = Vec::new();
        let mut p = parent(path);
        while let Some(dir) = p {
            match self.nodes.get(dir) {
                Some(e) if e.kind == "dir" => break,
                Some(_) => {
                    // A non-directory in the way: a tar applier replaces it.
                    self.nodes.remove(dir);
                    missing.push(dir.to_owned());
                }
                None => missing.push(dir.to_owned()),
            }
            p = parent(dir);
        }
        for dir in missing {
            let mut e = root_entry();
            e.path.clone_from(&dir);
            self.nodes.insert(dir, e);
        }
    }

    /// Apply one layer tar (any compression kiln reads) on top.
    pub fn apply_layer(&mut self, reader: impl Read) -> Result<()> {
        let (_, reader) = decompress(reader).map_err(|e| err(format!("layer: {e}")))?;
        let mut archive = tar::Archive::new(reader);
        // Paths this layer wrote: an opaque marker hides only lower layers.
        let mut written: BTreeSet<String> = BTreeSet::new();
        let entries = archive
            .entries()
            .map_err(|e| err(format!("reading layer tar: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| err(format!("reading layer tar: {e}")))?;
            let raw = entry
                .path()
                .map_err(|e| err(format!("layer entry path: {e}")))?
                .to_string_lossy()
                .into_owned();
            let Some(path) = clean(&raw) else {
                return Err(err(format!("layer entry `{raw}` has `..`")));
            };
            let name = path.rsplit('/').next().unwrap_or_default().to_owned();
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let dir = parent(&path).unwrap_or("/").to_owned();
                if name == ".wh..wh..opq" {
                    for d in self.descendants(&dir) {
                        if !written.contains(&d) {
                            self.nodes.remove(&d);
                        }
                    }
                } else if !hidden.starts_with(".wh.") {
                    let gone = if dir == "/" {
                        format!("/{hidden}")
                    } else {
                        format!("{dir}/{hidden}")
                    };
                    self.remove_tree(&gone);
                }
                continue;
            }
            let header = entry.header().clone();
            let mode = header
                .mode()
                .map_err(|e| err(format!("{path}: mode: {e}")))?;
            let uid = header.uid().map_err(|e| err(format!("{path}: uid: {e}")))?;
            let gid = header.gid().map_err(|e| err(format!("{path}: gid: {e}")))?;
            let mut e = Entry {
                path: path.clone(),
                kind: String::new(),
                mode: format!("{:04o}", mode & 0o7777),
                uid,
                gid,
                size: 0,
                sha256: None,
                text: None,
                target: None,
                device: None,
            };
            let ty = header.entry_type();
            match ty {
                tar::EntryType::Directory => "dir".clone_into(&mut e.kind),
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    "file".clone_into(&mut e.kind);
                    let mut h = kiln_oci::digest::Hasher::sha256();
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut size = 0u64;
                    let mut head = Vec::new();
                    loop {
                        let n = entry
                            .read(&mut buf)
                            .map_err(|e| err(format!("{path}: reading content: {e}")))?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                        if head.len() <= TEXT_LIMIT {
                            head.extend_from_slice(&buf[..n.min(TEXT_LIMIT + 1)]);
                        }
                        size += n as u64;
                    }
                    e.size = size;
                    e.sha256 = Some(h.finish().hex().to_owned());
                    if head.len() <= TEXT_LIMIT {
                        e.text = String::from_utf8(head).ok();
                    }
                }
                tar::EntryType::Symlink => {
                    "symlink".clone_into(&mut e.kind);
                    let target = entry
                        .link_name()
                        .map_err(|er| err(format!("{path}: link name: {er}")))?
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    "0777".clone_into(&mut e.mode);
                    e.target = Some(target);
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(|er| err(format!("{path}: link name: {er}")))?
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let Some(tpath) = clean(&target) else {
                        return Err(err(format!("{path}: hard link to `{target}` has `..`")));
                    };
                    let Some(t) = self.nodes.get(&tpath) else {
                        return Err(err(format!(
                            "{path}: hard link to `{tpath}` which does not exist"
                        )));
                    };
                    let mut t = t.clone();
                    t.path.clone_from(&path);
                    e = t;
                }
                tar::EntryType::Char | tar::EntryType::Block => {
                    let kind = if ty == tar::EntryType::Char {
                        "char"
                    } else {
                        "block"
                    };
                    kind.clone_into(&mut e.kind);
                    let major = header.device_major().ok().flatten().unwrap_or(0);
                    let minor = header.device_minor().ok().flatten().unwrap_or(0);
                    e.device = Some(format!("{major}:{minor}"));
                }
                tar::EntryType::Fifo => "fifo".clone_into(&mut e.kind),
                // PAX/GNU extension headers are consumed by the tar crate.
                other => {
                    return Err(err(format!("{path}: unsupported tar entry type {other:?}")));
                }
            }
            if path == "/" {
                if e.kind == "dir" {
                    self.nodes.insert(path, e);
                }
                continue;
            }
            let replaces_dir = self.nodes.get(&path).is_some_and(|old| old.kind == "dir");
            if replaces_dir && e.kind != "dir" {
                self.remove_tree(&path);
            }
            self.ensure_parents(&path);
            written.insert(path.clone());
            self.nodes.insert(path, e);
        }
        Ok(())
    }
}

/// The selected config fields of a docker/OCI image config JSON.
pub fn config_fields(config: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let container = config.get("config").unwrap_or(&Value::Null);
    for field in CONFIG_FIELDS {
        match container.get(*field) {
            None | Some(Value::Null) => {}
            // Empty maps and lists say the same as an absent field.
            Some(Value::Object(m)) if m.is_empty() => {}
            Some(Value::Array(a)) if a.is_empty() && *field != "Cmd" && *field != "Entrypoint" => {}
            Some(v) => {
                out.insert((*field).to_owned(), v.clone());
            }
        }
    }
    if let Some(Value::String(a)) = config.get("author")
        && !a.is_empty()
    {
        out.insert("Author".to_owned(), Value::String(a.clone()));
    }
    out
}

/// An image read from a docker archive: its config and flattened tree.
#[derive(Debug, Clone)]
pub struct Image {
    /// The whole config JSON.
    pub config: Value,
    /// Every layer applied in order.
    pub tree: Tree,
}

/// Read the first (or the only) image of a docker archive (`docker save`,
/// `kiln save --format docker`).
pub fn read_docker_archive(path: &Path) -> Result<Image> {
    // Two passes: manifest.json may come after the blobs.
    let files = archive_members(path)?;
    let manifest = files
        .get("manifest.json")
        .ok_or_else(|| err(format!("{}: no manifest.json", path.display())))?;
    let manifest: Value = serde_json::from_slice(manifest)
        .map_err(|e| err(format!("{}: manifest.json: {e}", path.display())))?;
    let first = manifest
        .get(0)
        .ok_or_else(|| err(format!("{}: manifest.json lists no image", path.display())))?;
    let config_name = first["Config"]
        .as_str()
        .ok_or_else(|| err("manifest.json: no Config"))?;
    let config = files
        .get(config_name)
        .ok_or_else(|| err(format!("{}: missing {config_name}", path.display())))?;
    let config: Value =
        serde_json::from_slice(config).map_err(|e| err(format!("{config_name}: {e}")))?;
    let mut tree = Tree::new();
    for layer in first["Layers"].as_array().into_iter().flatten() {
        let name = layer
            .as_str()
            .ok_or_else(|| err("manifest.json: bad layer"))?;
        let bytes = files
            .get(name)
            .ok_or_else(|| err(format!("{}: missing layer {name}", path.display())))?;
        tree.apply_layer(&bytes[..])
            .map_err(|e| err(format!("{name}: {e}")))?;
    }
    Ok(Image { config, tree })
}

fn archive_members(path: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let file = File::open(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let mut archive = tar::Archive::new(io::BufReader::new(file));
    let mut out = BTreeMap::new();
    for entry in archive
        .entries()
        .map_err(|e| err(format!("{}: {e}", path.display())))?
    {
        let mut entry = entry.map_err(|e| err(format!("{}: {e}", path.display())))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| err(format!("{}: {e}", path.display())))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        let mut buf = Vec::new();
        entry
            .read_to_end(&mut buf)
            .map_err(|e| err(format!("{}: {name}: {e}", path.display())))?;
        out.insert(name, buf);
    }
    Ok(out)
}

/// The base tree: one plain layer tar (what `kiln import`/`docker import` got).
pub fn base_tree(layer: &[u8]) -> Result<Tree> {
    let mut t = Tree::new();
    t.apply_layer(layer)?;
    Ok(t)
}

/// Describe `image` relative to `base`.
pub fn snapshot(image: &Image, base: &Tree) -> Snapshot {
    let filesystem = image
        .tree
        .entries()
        .filter(|e| base.get(&e.path) != Some(*e))
        .cloned()
        .collect();
    let mut removed: Vec<String> = Vec::new();
    for e in base.entries() {
        if image.tree.get(&e.path).is_some() {
            continue;
        }
        if removed
            .last()
            .is_some_and(|r| e.path.starts_with(&under(r)))
        {
            continue;
        }
        removed.push(e.path.clone());
    }
    Snapshot {
        reference: String::new(),
        config: config_fields(&image.config),
        filesystem,
        removed,
    }
}

impl Snapshot {
    /// Parse a snapshot file's text.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| err(format!("snapshot: {e}")))
    }

    /// The text form: pretty JSON with one line per file system entry, so a
    /// diff of two snapshots reads like a diff of two listings.
    pub fn to_json(&self) -> String {
        let mut s = String::from("{\n");
        if !self.reference.is_empty() {
            let _ = writeln!(
                s,
                "  \"reference\": {},",
                serde_json::to_string(&self.reference).unwrap_or_default()
            );
        }
        let config = serde_json::to_string_pretty(&self.config).unwrap_or_default();
        let _ = writeln!(s, "  \"config\": {},", config.replace('\n', "\n  "));
        s.push_str("  \"filesystem\": [");
        for (i, e) in self.filesystem.iter().enumerate() {
            s.push_str(if i == 0 { "\n    " } else { ",\n    " });
            s.push_str(&serde_json::to_string(e).unwrap_or_default());
        }
        s.push_str(if self.filesystem.is_empty() {
            "],\n"
        } else {
            "\n  ],\n"
        });
        let _ = writeln!(
            s,
            "  \"removed\": {}",
            serde_json::to_string(&self.removed).unwrap_or_default()
        );
        s.push_str("}\n");
        s
    }

    /// A human-readable list of differences (empty when equal), `self` being
    /// the expected side. `reference` is not compared.
    pub fn diff(&self, actual: &Self) -> Vec<String> {
        let mut out = Vec::new();
        let keys: BTreeSet<&String> = self.config.keys().chain(actual.config.keys()).collect();
        for k in keys {
            let (a, b) = (self.config.get(k), actual.config.get(k));
            if a != b {
                out.push(format!(
                    "config {k}: expected {}, got {}",
                    a.map_or("(absent)".to_owned(), Value::to_string),
                    b.map_or("(absent)".to_owned(), Value::to_string)
                ));
            }
        }
        let exp: BTreeMap<&str, &Entry> = self
            .filesystem
            .iter()
            .map(|e| (e.path.as_str(), e))
            .collect();
        let act: BTreeMap<&str, &Entry> = actual
            .filesystem
            .iter()
            .map(|e| (e.path.as_str(), e))
            .collect();
        let paths: BTreeSet<&str> = exp.keys().chain(act.keys()).copied().collect();
        for p in paths {
            match (exp.get(p), act.get(p)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => out.push(format!(
                    "{p}: expected {}, got {}",
                    serde_json::to_string(a).unwrap_or_default(),
                    serde_json::to_string(b).unwrap_or_default()
                )),
                (Some(a), None) => out.push(format!(
                    "{p}: missing (expected {})",
                    serde_json::to_string(a).unwrap_or_default()
                )),
                (None, Some(b)) => out.push(format!(
                    "{p}: unexpected {}",
                    serde_json::to_string(b).unwrap_or_default()
                )),
                (None, None) => {}
            }
        }
        if self.removed != actual.removed {
            out.push(format!(
                "removed base paths: expected {:?}, got {:?}",
                self.removed, actual.removed
            ));
        }
        out
    }
}

/// `Digest` of some bytes, hex only (what snapshots print).
pub fn sha256_hex(data: &[u8]) -> String {
    Digest::sha256_of(data).hex().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer tar from (path, kind, content-or-target) triples.
    fn layer(entries: &[(&str, char, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            match kind {
                'd' => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
                'f' => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_bytes()).unwrap();
                }
                'l' => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, path, data).unwrap();
                }
                'h' => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_mode(0o644);
                    h.set_size(0);
                    b.append_link(&mut h, path, data).unwrap();
                }
                _ => unreachable!(),
            }
        }
        b.into_inner().unwrap()
    }

    fn paths(t: &Tree) -> Vec<String> {
        t.entries().map(|e| e.path.clone()).collect()
    }

    #[test]
    fn whiteouts_delete_subtrees_and_opaque_dirs_hide_only_lower_layers() {
        let mut t = Tree::new();
        t.apply_layer(
            &layer(&[
                ("a/", 'd', ""),
                ("a/x", 'f', "x"),
                ("a/sub/", 'd', ""),
                ("a/sub/y", 'f', "y"),
                ("b/", 'd', ""),
                ("b/old", 'f', "o"),
                ("c", 'f', "c"),
            ])[..],
        )
        .unwrap();
        t.apply_layer(
            &layer(&[
                ("a/.wh.sub", 'f', ""),
                ("b/new", 'f', "n"),
                ("b/.wh..wh..opq", 'f', ""),
                (".wh.c", 'f', ""),
            ])[..],
        )
        .unwrap();
        assert_eq!(paths(&t), ["/", "/a", "/a/x", "/b", "/b/new"]);
    }

    #[test]
    fn hard_links_take_their_targets_content_and_types_replace() {
        let mut t = Tree::new();
        t.apply_layer(&layer(&[("d/", 'd', ""), ("d/f", 'f', "data"), ("d/g", 'h', "d/f")])[..])
            .unwrap();
        let g = t.get("/d/g").unwrap();
        assert_eq!((g.kind.as_str(), g.text.as_deref()), ("file", Some("data")));
        // A file replaces a directory with everything under it.
        t.apply_layer(&layer(&[("d", 'l', "/elsewhere")])[..])
            .unwrap();
        assert_eq!(paths(&t), ["/", "/d"]);
        assert_eq!(t.get("/d").unwrap().target.as_deref(), Some("/elsewhere"));
        // Missing parents appear as plain directories.
        t.apply_layer(&layer(&[("p/q/r", 'f', "")])[..]).unwrap();
        assert_eq!(t.get("/p/q").unwrap().kind, "dir");
    }

    #[test]
    fn snapshots_list_changes_against_the_base_and_topmost_removals() {
        let base = base_tree(&layer(&[
            ("bin/", 'd', ""),
            ("bin/sh", 'l', "busybox"),
            ("etc/", 'd', ""),
            ("etc/hostname", 'f', "kiln\n"),
        ]))
        .unwrap();
        let mut tree = Tree::new();
        tree.apply_layer(
            &layer(&[
                ("etc/", 'd', ""),
                ("etc/hostname", 'f', "other\n"),
                ("new", 'f', ""),
            ])[..],
        )
        .unwrap();
        let image = Image {
            config: serde_json::json!({"config": {"Env": ["A=1"], "Cmd": null, "Labels": {}}, "author": "me"}),
            tree,
        };
        let s = snapshot(&image, &base);
        assert_eq!(
            s.filesystem
                .iter()
                .map(|e| e.path.as_str())
                .collect::<Vec<_>>(),
            ["/etc/hostname", "/new"]
        );
        assert_eq!(s.removed, ["/bin"]);
        assert_eq!(
            serde_json::to_value(&s.config).unwrap(),
            serde_json::json!({"Env": ["A=1"], "Author": "me"})
        );
        // The text form parses back to the same snapshot, and a changed
        // entry shows in the diff.
        let back = Snapshot::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);
        let mut other = back.clone();
        other.filesystem[1].mode = "0600".to_owned();
        let diff = s.diff(&other);
        assert_eq!(diff.len(), 1, "{diff:?}");
        assert!(diff[0].starts_with("/new: expected"), "{diff:?}");
    }
}
