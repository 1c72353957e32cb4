//! kiln's op kinds: source, exec, file and merge, as data with their
//! canonical cache-key encodings.
//!
//! These say *what* to do, never how: the executor that runs them against
//! the store, the runtime and the build context is the only place that
//! dispatches on the kind. The build crate turns Dockerfile instructions
//! into these; nothing here knows about instructions.
//!
//! Inputs are positional: an [`ExecOp`]'s input 0 is its root filesystem,
//! a [`FileOp`]'s input 0 is the filesystem it changes; further inputs are
//! referred to by index from mounts and copy actions.

use std::path::{Path, PathBuf};

use crate::key::{CacheKey, KeyEncoder};
use crate::op::Op;

mod copy;
mod perm;
mod view;

pub use copy::{CopyStats, Source, apply_actions, apply_actions_with_users};
pub use perm::{Chmod, Owner, resolve_owner};
pub use view::{Entry, View, clean};

/// Why a file action failed. Paths are inside the filesystem being read or
/// written (absolute, as the Dockerfile author sees them) unless said.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// A source or a parent of the destination does not exist.
    #[error("{}: no such file or directory", path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// A path that must be a directory is not one.
    #[error("{}: not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A file would replace an existing directory.
    #[error("cannot copy a file over the directory {}", path.display())]
    IsADirectory {
        /// The directory.
        path: PathBuf,
    },
    /// Symlinks loop.
    #[error("{}: too many levels of symbolic links", path.display())]
    SymlinkLoop {
        /// The path being resolved.
        path: PathBuf,
    },
    /// A `--chmod` that is neither octal nor symbolic.
    #[error(
        "invalid --chmod `{value}`: expected an octal mode (0755) or a symbolic one (u+x,go-w)"
    )]
    BadChmod {
        /// The value.
        value: String,
    },
    /// A `--chown` user missing from the destination's /etc/passwd.
    #[error("unable to find user {name}: no matching entries in passwd file")]
    UnknownUser {
        /// The name.
        name: String,
    },
    /// A `--chown` group missing from the destination's /etc/group.
    #[error("unable to find group {name}: no matching entries in group file")]
    UnknownGroup {
        /// The name.
        name: String,
    },
    /// An invalid source or `--exclude` pattern.
    #[error("invalid pattern `{pattern}`: {reason}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A copy names an input the op does not have.
    #[error("file op refers to input {input}, which it does not have")]
    NoSuchInput {
        /// The input index.
        input: usize,
    },
    /// An I/O error (the message names the path on disk).
    #[error(transparent)]
    Io(std::io::Error),
}

impl FileOpError {
    fn io(what: &str, path: &Path, err: &std::io::Error) -> FileOpError {
        FileOpError::Io(std::io::Error::new(
            err.kind(),
            format!("failed to {what} {}: {err}", path.display()),
        ))
    }
}

/// One op of a build graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KilnOp {
    /// Produce a filesystem from outside the graph.
    Source(SourceOp),
    /// Run a process on input 0 and keep its changes.
    Exec(ExecOp),
    /// Copy, create or remove files on input 0.
    File(FileOp),
    /// Stack the inputs' layers, later ones on top.
    Merge(MergeOp),
}

impl Op for KilnOp {
    fn kind(&self) -> &'static str {
        match self {
            KilnOp::Source(_) => "source",
            KilnOp::Exec(_) => "exec",
            KilnOp::File(_) => "file",
            KilnOp::Merge(_) => "merge",
        }
    }

    /// A RUN step waits on its container process and a URL source on the
    /// network: their executors take a CPU permit only around their own
    /// work. Everything else is kiln's own work throughout.
    fn cpu_bound(&self) -> bool {
        !matches!(
            self,
            KilnOp::Exec(_) | KilnOp::Source(SourceOp::Http { .. })
        )
    }
}

impl CacheKey for KilnOp {
    fn encode_key(&self, enc: &mut KeyEncoder) {
        match self {
            KilnOp::Source(op) => op.encode_key(enc),
            KilnOp::Exec(op) => op.encode_key(enc),
            KilnOp::File(op) => op.encode_key(enc),
            KilnOp::Merge(op) => op.encode_key(enc),
        }
    }
}

/// Where a source's filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOp {
    /// An empty filesystem (`FROM scratch`).
    Scratch,
    /// An image's root filesystem. The executor's content key is the
    /// digest the reference resolves to, so a moved tag misses.
    Image {
        /// The normalised reference (`docker.io/library/alpine:3.20`).
        reference: String,
        /// The platform (`linux/amd64`).
        platform: String,
    },
    /// Files of a build context. The content key is the checksum of exactly
    /// the selected files (after `.dockerignore`).
    Context {
        /// The context's name (`context` for the main one).
        name: String,
        /// Only these paths (and what is under them); empty: everything.
        include: Vec<String>,
        /// Minus these patterns (`.dockerignore` syntax).
        exclude: Vec<String>,
    },
    /// A git repository's tree. The content key is the commit it resolved to.
    Git {
        /// The remote URL.
        url: String,
        /// Branch, tag or commit (`None`: the default branch).
        reference: Option<String>,
        /// A sub-directory to use as the root.
        subdir: Option<String>,
        /// Keep the `.git` directory.
        keep_git_dir: bool,
        /// The commit (or a prefix of it) the reference must resolve to
        /// (`ADD --checksum`).
        checksum: Option<String>,
    },
    /// One file downloaded over http(s). The content key is the download's
    /// digest.
    Http {
        /// The URL.
        url: String,
        /// The digest the download must have (`ADD --checksum`).
        checksum: Option<String>,
        /// The file's name (default: from the URL).
        filename: Option<String>,
    },
}

impl CacheKey for SourceOp {
    fn encode_key(&self, enc: &mut KeyEncoder) {
        match self {
            SourceOp::Scratch => enc.tag("source.scratch", 1),
            SourceOp::Image {
                reference,
                platform,
            } => {
                enc.tag("source.image", 1);
                enc.str("reference", reference);
                enc.str("platform", platform);
            }
            SourceOp::Context {
                name,
                include,
                exclude,
            } => {
                enc.tag("source.context", 1);
                enc.str("name", name);
                enc.strs("include", include);
                enc.strs("exclude", exclude);
            }
            SourceOp::Git {
                url,
                reference,
                subdir,
                keep_git_dir,
                checksum,
            } => {
                enc.tag("source.git", 1);
                enc.str("url", url);
                enc.opt_str("reference", reference.as_deref());
                enc.opt_str("subdir", subdir.as_deref());
                enc.bool("keep_git_dir", *keep_git_dir);
                enc.opt_str("checksum", checksum.as_deref());
            }
            SourceOp::Http {
                url,
                checksum,
                filename,
            } => {
                enc.tag("source.http", 1);
                enc.str("url", url);
                enc.opt_str("checksum", checksum.as_deref());
                enc.opt_str("filename", filename.as_deref());
            }
        }
    }
}

/// Network mode of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// kiln's default (the host's network, as BuildKit's OCI worker does).
    #[default]
    Default,
    /// No network: a loopback device only.
    None,
    /// The host's network namespace.
    Host,
}

impl Network {
    /// The flag value (`default`, `none`, `host`).
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Default => "default",
            Network::None => "none",
            Network::Host => "host",
        }
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// Everyone uses the same directory at once.
    #[default]
    Shared,
    /// A busy directory makes a new one.
    Private,
    /// One user at a time; others wait.
    Locked,
}

impl Sharing {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Sharing::Shared => "shared",
            Sharing::Private => "private",
            Sharing::Locked => "locked",
        }
    }
}

/// What is mounted at a mount's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// An input's filesystem (`type=bind`).
    Input {
        /// Which input.
        input: usize,
        /// The path inside it to mount.
        selector: String,
    },
    /// A persistent directory in the store (`type=cache`).
    Cache {
        /// Its id (default: the target).
        id: String,
        /// How concurrent builds share it.
        sharing: Sharing,
        /// An input that seeds a new cache directory, and the path in it.
        from: Option<(usize, String)>,
        /// Mode of a new directory.
        mode: u32,
        /// Owner of a new directory.
        uid: u32,
        /// Group of a new directory.
        gid: u32,
    },
    /// An empty tmpfs (`type=tmpfs`).
    Tmpfs {
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// A secret file (`type=secret`), never in a layer.
    Secret {
        /// The secret's id.
        id: String,
        /// Also (or only, when the mount's target is empty) expose it as
        /// this environment variable (`env=`).
        env: Option<String>,
        /// Fail when the secret is missing.
        required: bool,
        /// File mode.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
}

/// One mount of an [`ExecOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it appears in the container.
    pub target: String,
    /// What is mounted.
    pub source: MountSource,
    /// Mounted read-only.
    pub readonly: bool,
}

impl CacheKey for Mount {
    fn encode_key(&self, enc: &mut KeyEncoder) {
        enc.tag("mount", 1);
        enc.str("target", &self.target);
        enc.bool("readonly", self.readonly);
        match &self.source {
            MountSource::Input { input, selector } => {
                enc.str("kind", "bind");
                enc.u64("input", *input as u64);
                enc.str("selector", selector);
            }
            MountSource::Cache {
                id,
                sharing,
                from,
                mode,
                uid,
                gid,
            } => {
                // The cache directory's *contents* are not part of the key:
                // a cache mount is by design outside the step's result.
                enc.str("kind", "cache");
                enc.str("id", id);
                enc.str("sharing", sharing.as_str());
                match from {
                    Some((input, path)) => {
                        enc.u64("from.input", *input as u64);
                        enc.str("from.path", path);
                    }
                    None => enc.opt_str("from", None),
                }
                enc.u64("mode", u64::from(*mode));
                enc.u64("uid", u64::from(*uid));
                enc.u64("gid", u64::from(*gid));
            }
            MountSource::Tmpfs { size } => {
                enc.str("kind", "tmpfs");
                match size {
                    Some(size) => enc.u64("size", *size),
                    None => enc.opt_str("size", None),
                }
            }
            MountSource::Secret {
                id,
                env,
                required,
                mode,
                uid,
                gid,
            } => {
                // The secret's value is never part of a key (nor a layer,
                // nor the history): only which secret and where.
                enc.str("kind", "secret");
                enc.str("id", id);
                if let Some(env) = env {
                    enc.str("env", env);
                }
                enc.bool("required", *required);
                enc.u64("mode", u64::from(*mode));
                enc.u64("uid", u64::from(*uid));
                enc.u64("gid", u64::from(*gid));
            }
        }
    }
}

/// Run a process on input 0's filesystem; the result is that filesystem
/// with the process's changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOp {
    /// argv (a shell-form RUN is already `["/bin/sh", "-c", "…"]`).
    pub args: Vec<String>,
    /// Environment, in order.
    pub env: Vec<(String, String)>,
    /// Proxy variables (`HTTP_PROXY`…): passed to the process, but kept out
    /// of the key like BuildKit does, so a proxy change does not rebuild.
    pub proxy_env: Vec<(String, String)>,
    /// Working directory (created when missing).
    pub cwd: String,
    /// `user[:group]` (names resolved in the root filesystem).
    pub user: String,
    /// Network mode.
    pub network: Network,
    /// Extra mounts.
    pub mounts: Vec<Mount>,
}

impl CacheKey for ExecOp {
    fn encode_key(&self, enc: &mut KeyEncoder) {
        enc.tag("exec", 1);
        enc.strs("args", &self.args);
        enc.pairs(
            "env",
            self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        // `proxy_env` left out on purpose (see the field).
        enc.str("cwd", &self.cwd);
        enc.str("user", &self.user);
        enc.str("network", self.network.as_str());
        enc.u64("mounts", self.mounts.len() as u64);
        for (i, mount) in self.mounts.iter().enumerate() {
            enc.value(&format!("mount[{i}]"), mount);
        }
    }
}

/// Owner of created or copied files; names are resolved in the
/// destination's `/etc/passwd` and `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chown {
    /// User name or id.
    pub user: String,
    /// Group name or id (`None`: the user's primary group, or same as user id).
    pub group: Option<String>,
}

impl CacheKey for Chown {
    fn encode_key(&self, enc: &mut KeyEncoder) {
        enc.tag("chown", 1);
        enc.str("user", &self.user);
        enc.opt_str("group", self.group.as_deref());
    }
}

fn opt_value<T: CacheKey>(enc: &mut KeyEncoder, name: &str, value: Option<&T>) {
    match value {
        Some(v) => enc.value(name, v),
        None => enc.opt_str(name, None),
    }
}

/// Copy files from an input into input 0 (`COPY`, `ADD`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Copy {
    /// The input to copy from.
    pub from: usize,
    /// Source paths or patterns inside it (relative to its root).
    pub sources: Vec<String>,
    /// Destination path (a trailing `/` means "into this directory").
    pub dest: String,
    /// Owner of the copies (`None`: keep the source's for `--from`, root
    /// for the context, as BuildKit does).
    pub chown: Option<Chown>,
    /// `--chmod` as written (octal or symbolic).
    pub chmod: Option<String>,
    /// Follow a symlink given as source.
    pub follow_symlinks: bool,
    /// A directory source copies its contents, not itself.
    pub dir_contents_only: bool,
    /// Sources may be glob patterns.
    pub allow_wildcard: bool,
    /// A pattern matching nothing is not an error.
    pub allow_empty_wildcard: bool,
    /// Create missing parents of the destination.
    pub create_dest_path: bool,
    /// Extract local tar archives (`ADD`).
    pub unpack_archives: bool,
    /// Keep the sources' parent directories (`--parents`).
    pub parents: bool,
    /// Patterns of source files to leave out (`--exclude`).
    pub exclude: Vec<String>,
}

impl CacheKey for Copy {
    fn encode_key(&self, enc: &mut KeyEncoder) {
        enc.tag("copy", 1);
        enc.u64("from", self.from as u64);
        enc.strs("sources", &self.sources);
        enc.str("dest", &self.dest);
        opt_value(enc, "chown", self.chown.as_ref());
        enc.opt_str("chmod", self.chmod.as_deref());
        enc.bool("follow_symlinks", self.follow_symlinks);
        enc.bool("dir_contents_only", self.dir_contents_only);
        enc.bool("allow_wildcard", self.allow_wildcard);
        enc.bool("allow_empty_wildcard", self.allow_empty_wildcard);
        enc.bool("create_dest_path", self.create_dest_path);
        enc.bool("unpack_archives", self.unpack_archives);
        enc.bool("parents", self.parents);
        enc.strs("exclude", &self.exclude);
    }
}

/// One change a [`FileOp`] makes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAction {
    /// Copy from an input.
    Copy(Copy),
    /// Create a directory.
    Mkdir {
        /// Absolute path.
        path: String,
        /// Mode.
        mode: u32,
        /// Create missing parents.
        parents: bool,
        /// Owner.
        chown: Option<Chown>,
    },
    /// Create a file with the given contents (`COPY <<EOF`).
    Mkfile {
        /// Absolute path.
        path: String,
        /// Mode.
        mode: u32,
        /// Contents.
        data: Vec<u8>,
        /// Owner.
        chown: Option<Chown>,
    },
}

impl CacheKey for FileAction {
    fn encode_key(&self, enc: &mut KeyEncoder) {
        match self {
            FileAction::Copy(copy) => copy.encode_key(enc),
            FileAction::Mkdir {
                path,
                mode,
                parents,
                chown,
            } => {
                enc.tag("mkdir", 1);
                enc.str("path", path);
                enc.u64("mode", u64::from(*mode));
                enc.bool("parents", *parents);
                opt_value(enc, "chown", chown.as_ref());
            }
            FileAction::Mkfile {
                path,
                mode,
                data,
                chown,
            } => {
                enc.tag("mkfile", 1);
                enc.str("path", path);
                enc.u64("mode", u64::from(*mode));
                // The data can be large: its digest stands for it.
                enc.key("data", &crate::key::Key::of_bytes(data));
                opt_value(enc, "chown", chown.as_ref());
            }
        }
    }
}

/// Change files on input 0 (an empty filesystem when the op has no inputs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileOp {
    /// The changes, applied in order.
    pub actions: Vec<FileAction>,
    /// The result is a new layer on its own, not on top of input 0
    /// (`COPY --link`); input 0 is then only the copy's context.
    pub link: bool,
}

impl CacheKey for FileOp {
    fn encode_key(&self, enc: &mut KeyEncoder) {
        enc.tag("file", 1);
        enc.bool("link", self.link);
        enc.u64("actions", self.actions.len() as u64);
        for (i, action) in self.actions.iter().enumerate() {
            enc.value(&format!("action[{i}]"), action);
        }
    }
}

/// Stack the inputs' filesystems, later inputs over earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeOp;

impl CacheKey for MergeOp {
    fn encode_key(&self, enc: &mut KeyEncoder) {
        // Everything that matters is the inputs and their order, which the
        // vertex encoding already has.
        enc.tag("merge", 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyEncoder;

    fn key(op: &KilnOp) -> crate::Key {
        KeyEncoder::key_of(op).0
    }

    fn run(args: &[&str]) -> ExecOp {
        ExecOp {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            cwd: "/".into(),
            ..ExecOp::default()
        }
    }

    #[test]
    fn proxy_env_is_not_part_of_the_key() {
        let a = run(&["true"]);
        let mut b = a.clone();
        b.proxy_env = vec![("HTTP_PROXY".into(), "http://proxy:3128".into())];
        assert_eq!(key(&KilnOp::Exec(a)), key(&KilnOp::Exec(b)));
    }

    #[test]
    fn every_semantic_exec_field_changes_the_key() {
        let base = run(&["make"]);
        let mut variants = vec![base.clone()];
        let mut v = base.clone();
        v.args.push("all".into());
        variants.push(v);
        let mut v = base.clone();
        v.env.push(("A".into(), "1".into()));
        variants.push(v);
        let mut v = base.clone();
        v.cwd = "/src".into();
        variants.push(v);
        let mut v = base.clone();
        v.user = "1000".into();
        variants.push(v);
        let mut v = base.clone();
        v.network = Network::None;
        variants.push(v);
        let mut v = base.clone();
        v.mounts.push(Mount {
            target: "/cache".into(),
            source: MountSource::Tmpfs { size: None },
            readonly: false,
        });
        variants.push(v);
        let keys: std::collections::HashSet<_> = variants
            .into_iter()
            .map(|v| key(&KilnOp::Exec(v)))
            .collect();
        assert_eq!(keys.len(), 7);
    }

    #[test]
    fn secret_mount_is_keyed_by_its_id_only() {
        // regression: a secret mount names its id only; its value never reaches a key.
        let mut op = run(&["cat", "/run/secrets/token"]);
        op.mounts.push(Mount {
            target: "/run/secrets/token".into(),
            source: MountSource::Secret {
                id: "token".into(),
                env: None,
                required: true,
                mode: 0o400,
                uid: 0,
                gid: 0,
            },
            readonly: true,
        });
        let (_, pre) = KeyEncoder::key_of(&KilnOp::Exec(op));
        assert_eq!(pre.get("mount[0].id"), Some("token"));
        assert_eq!(pre.get("mount[0].kind"), Some("secret"));
    }

    #[test]
    fn copy_chmod_changes_the_key() {
        // regression: COPY --chmod must change the cache key
        let copy = Copy {
            from: 1,
            sources: vec!["a.txt".into()],
            dest: "/app/".into(),
            ..Copy::default()
        };
        let mut with_chmod = copy.clone();
        with_chmod.chmod = Some("0755".into());
        let op = |c: Copy| {
            KilnOp::File(FileOp {
                actions: vec![FileAction::Copy(c)],
                link: false,
            })
        };
        assert_ne!(key(&op(copy)), key(&op(with_chmod)));
    }

    #[test]
    fn kinds_with_equal_fields_differ() {
        let scratch = KilnOp::Source(SourceOp::Scratch);
        let merge = KilnOp::Merge(MergeOp);
        let file = KilnOp::File(FileOp::default());
        assert_ne!(key(&scratch), key(&merge));
        assert_ne!(key(&merge), key(&file));
        assert_eq!(scratch.kind(), "source");
    }

    #[test]
    fn only_process_and_network_ops_wait_without_a_cpu_permit() {
        assert!(!KilnOp::Exec(ExecOp::default()).cpu_bound());
        assert!(
            !KilnOp::Source(SourceOp::Http {
                url: "http://127.0.0.1/x".into(),
                checksum: None,
                filename: None,
            })
            .cpu_bound()
        );
        assert!(KilnOp::File(FileOp::default()).cpu_bound());
        assert!(KilnOp::Merge(MergeOp).cpu_bound());
        assert!(KilnOp::Source(SourceOp::Scratch).cpu_bound());
    }
}
