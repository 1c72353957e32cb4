//! The typed layer: a [`SyntaxTree`] → [`Dockerfile`] of stages and typed
//! instructions.
//!
//! This is where BuildKit's `instructions` package validates: an unknown
//! instruction or flag, a bad flag value, a malformed `--mount`, a FROM with
//! the wrong arity or a bad stage name, ONBUILD ONBUILD… are [`Error`]s with a
//! location and, where it helps, a did-you-mean.
//!
//! Values stay as written (quotes included, variables unexpanded): expansion
//! depends on build arguments and on the ENV/ARG state at each step, so the
//! build expands them with [`crate::shell::Lexer`] (see
//! [`InstructionKind::expands_variables`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use pest::Parser as _;

use crate::error::{Error, Location};
use crate::grammar::{self, DockerfileGrammar, Rule};
use crate::shell::Lexer;
use crate::syntax::{Heredoc, Node, Span, SyntaxTree, parse_words};

/// Every instruction kiln knows, upper case.
pub const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// A whole Dockerfile, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character.
    pub escape: char,
    /// Parser directives (`syntax`, `escape`, `check`) by lower-case name.
    pub directives: Vec<(String, String)>,
    /// `ARG`s before the first `FROM` (usable in FROM lines).
    pub global_args: Vec<Instruction>,
    /// The build stages, in order.
    pub stages: Vec<Stage>,
    /// The syntax tree this was built from (source, spans).
    pub tree: SyntaxTree,
    /// Lower-case stage name → index of the first stage with that name, so
    /// that resolving references stays linear in the number of stages.
    stage_index: HashMap<String, usize>,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An image reference, as written (may contain `$VARS` of global ARGs).
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// One `FROM … [AS name]` and the instructions under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages.
    pub index: usize,
    /// The `AS` name, lower-cased as BuildKit does.
    pub name: Option<String>,
    /// The `AS` name as written.
    pub name_as_written: Option<String>,
    /// The base image text as written (unexpanded).
    pub base_name: String,
    /// The base, resolved with the global ARG defaults.
    pub base: Base,
    /// `FROM --platform=…`, unexpanded.
    pub platform: Option<String>,
    /// The FROM instruction's location.
    pub from: Meta,
    /// The instructions after FROM.
    pub instructions: Vec<Instruction>,
}

/// Where an instruction is and how it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The source bytes (heredoc bodies included).
    pub span: Span,
    /// First line, 1-based.
    pub start_line: usize,
    /// Last line, 1-based.
    pub end_line: usize,
    /// The keyword as written (`RUN`, `run`).
    pub keyword: String,
    /// The logical line as written (continuations joined).
    pub original: String,
}

/// A typed instruction with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// What it is.
    pub kind: InstructionKind,
    /// Where it is.
    pub meta: Meta,
}

/// Shell form (`RUN make`) or exec form (`RUN ["make"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellOrExec {
    /// Run with the stage's SHELL.
    Shell(String),
    /// Run directly.
    Exec(Vec<String>),
}

impl ShellOrExec {
    fn from_node(node: &Node) -> Self {
        if node.json {
            ShellOrExec::Exec(node.args.clone())
        } else {
            ShellOrExec::Shell(node.args.first().cloned().unwrap_or_default())
        }
    }

    /// Whether this is the exec (JSON) form.
    pub fn is_exec(&self) -> bool {
        matches!(self, ShellOrExec::Exec(_))
    }
}

/// A `key=value` pair of ENV or LABEL (both as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, as written.
    pub key: String,
    /// The value, as written (quotes kept; expand with the shell lexer).
    pub value: String,
    /// Whether the legacy `ENV key value` form was used.
    pub legacy: bool,
}

/// One name of an ARG instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDef {
    /// The name.
    pub name: String,
    /// The default, as written (quotes kept), if any.
    pub default: Option<String>,
}

/// RUN's network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// The default network.
    Default,
    /// No network.
    None,
    /// The host's network.
    Host,
}

/// RUN's security mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    /// The default sandbox.
    Sandbox,
    /// All capabilities (needs the builder's permission).
    Insecure,
}

/// How a cache mount is shared between concurrent builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    /// Concurrent writers share it.
    Shared,
    /// Each writer gets its own copy.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// The kind of a RUN `--mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    /// A directory of the context or another stage/image.
    Bind,
    /// A persistent cache directory.
    Cache,
    /// An empty in-memory file system.
    Tmpfs,
    /// A secret file or environment variable.
    Secret,
    /// An SSH agent socket.
    Ssh,
}

impl MountType {
    fn name(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// A validated RUN `--mount` (values unexpanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The kind of mount.
    pub kind: MountType,
    /// Where it appears in the container (for secret/ssh: defaulted as BuildKit does).
    pub target: Option<String>,
    /// Path in the source (context, stage or image).
    pub source: Option<String>,
    /// Stage or image to take the source from.
    pub from: Option<String>,
    /// Read-only.
    pub readonly: bool,
    /// Cache, secret or ssh id.
    pub id: Option<String>,
    /// Cache sharing mode.
    pub sharing: Option<CacheSharing>,
    /// File mode (octal), for cache/secret/ssh.
    pub mode: Option<u32>,
    /// Owner uid.
    pub uid: Option<u32>,
    /// Owner gid.
    pub gid: Option<u32>,
    /// Fail if the secret/ssh source is missing.
    pub required: bool,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// For secrets: the environment variable to expose it as.
    pub env: Option<String>,
    /// The flag value as written.
    pub raw: String,
}

/// RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub command: ShellOrExec,
    /// Heredocs opened on the RUN line.
    pub heredocs: Vec<Heredoc>,
    /// `--mount`s.
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: Option<NetworkMode>,
    /// `--security`.
    pub security: Option<SecurityMode>,
}

/// COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// Sources as written (`<<EOF` names a heredoc).
    pub sources: Vec<String>,
    /// The destination as written.
    pub dest: String,
    /// Heredocs used as sources.
    pub heredocs: Vec<Heredoc>,
    /// Whether the JSON form was used.
    pub json: bool,
    /// `--from` (COPY only): a stage name, index, or image.
    pub from: Option<String>,
    /// `--from` resolved to an earlier stage, if it names one.
    pub from_stage: Option<usize>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents` (COPY only).
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// `--checksum` (ADD only).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD only).
    pub keep_git_dir: bool,
    /// `--unpack` (ADD only).
    pub unpack: Option<bool>,
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    /// `HEALTHCHECK [options] CMD …`.
    Cmd {
        /// The test command.
        test: ShellOrExec,
        /// `--interval`.
        interval: Option<Duration>,
        /// `--timeout`.
        timeout: Option<Duration>,
        /// `--start-period`.
        start_period: Option<Duration>,
        /// `--start-interval`.
        start_interval: Option<Duration>,
        /// `--retries`.
        retries: Option<u32>,
    },
}

/// The typed instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(ShellOrExec),
    /// `ENTRYPOINT`.
    Entrypoint(ShellOrExec),
    /// `SHELL ["exe", "flag"]`.
    Shell(Vec<String>),
    /// `COPY`.
    Copy(Copy),
    /// `ADD`.
    Add(Copy),
    /// `ENV k=v …`.
    Env(Vec<KeyValue>),
    /// `LABEL k=v …`.
    Label(Vec<KeyValue>),
    /// `ARG name[=default] …`.
    Arg(Vec<ArgDef>),
    /// `EXPOSE 80/tcp …` (as written; expand, then [`parse_port`]).
    Expose(Vec<String>),
    /// `VOLUME /a /b` or `VOLUME ["/a"]`.
    Volume(Vec<String>),
    /// `USER name[:group]`.
    User(String),
    /// `WORKDIR /path`.
    Workdir(String),
    /// `STOPSIGNAL SIGTERM`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `ONBUILD <instruction>`: stored as text in the image, run by children.
    Onbuild {
        /// The trigger, typed (validated now, run later).
        trigger: Box<Instruction>,
        /// The trigger's text as the image config stores it (`RUN make`).
        expression: String,
    },
    /// `MAINTAINER name` (deprecated: use a label).
    Maintainer(String),
}

impl InstructionKind {
    /// The instruction's name, upper case.
    pub fn name(&self) -> &'static str {
        match self {
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Shell(_) => "SHELL",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::User(_) => "USER",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::StopSignal(_) => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
            InstructionKind::Onbuild { .. } => "ONBUILD",
            InstructionKind::Maintainer(_) => "MAINTAINER",
        }
    }

    /// Whether the build expands `$VARS` in this instruction's arguments
    /// (ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME,
    /// WORKDIR, ONBUILD). RUN, CMD, ENTRYPOINT, SHELL and HEALTHCHECK leave
    /// that to the shell at run time. Flags that expand: FROM `--platform`,
    /// COPY/ADD `--from`, `--chown`, `--chmod`, `--checksum`, and the
    /// fields of RUN `--mount`.
    pub fn expands_variables(&self) -> bool {
        matches!(
            self,
            InstructionKind::Add(_)
                | InstructionKind::Copy(_)
                | InstructionKind::Env(_)
                | InstructionKind::Expose(_)
                | InstructionKind::Label(_)
                | InstructionKind::StopSignal(_)
                | InstructionKind::User(_)
                | InstructionKind::Volume(_)
                | InstructionKind::Workdir(_)
                | InstructionKind::Onbuild { .. }
        )
    }
}

impl fmt::Display for ShellOrExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShellOrExec::Shell(s) => f.write_str(s),
            ShellOrExec::Exec(v) => write!(f, "{}", serde_json::to_string(v).unwrap_or_default()),
        }
    }
}

/// An EXPOSE item after expansion: port range and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// First port.
    pub start: u16,
    /// Last port (same as `start` for one port).
    pub end: u16,
    /// `tcp`, `udp` or `sctp`.
    pub proto: &'static str,
}

/// Parse an (expanded) EXPOSE item: `80`, `80/udp`, `8000-8010/tcp`.
pub fn parse_port(text: &str) -> Result<PortSpec, String> {
    // Rule `port_spec`.
    let tokens = grammar::port_spec(text)
        .ok_or_else(|| format!("invalid port `{text}`; expected PORT[-PORT][/PROTOCOL]"))?;
    let number = |p: &str| -> Result<u16, String> {
        p.parse()
            .map_err(|_| format!("invalid port `{p}`: must be 0-65535"))
    };
    let start = number(tokens.low)?;
    let end = tokens.high.map(number).transpose()?.unwrap_or(start);
    let proto = match tokens.proto {
        None => "tcp",
        Some(p) => match p.to_ascii_lowercase().as_str() {
            "tcp" => "tcp",
            "udp" => "udp",
            "sctp" => "sctp",
            other => {
                return Err(format!(
                    "invalid protocol `{other}`; expected tcp, udp or sctp"
                ));
            }
        },
    };
    if end < start {
        return Err(format!("invalid port range `{text}`: end before start"));
    }
    Ok(PortSpec { start, end, proto })
}

/// Parse a Go duration (`30s`, `1m30s`, `1.5h`, `500ms`, `0`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || format!("invalid duration `{text}`; use e.g. 30s, 1m30s, 500ms");
    // Rule `duration`.
    let parts = grammar::duration(text).ok_or_else(bad)?;
    let mut total = 0f64;
    for (number, unit) in parts {
        if number.is_empty() || number == "." {
            return Err(bad());
        }
        let number: f64 = number.parse().map_err(|_| bad())?;
        let nanos = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            _ => 3600e9,
        };
        total += number * nanos;
    }
    if !total.is_finite() || total > 9.2e18 {
        return Err(bad());
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(Duration::from_nanos(total as u64))
}

// ---------------------------------------------------------------- building

struct Ctx<'t> {
    tree: &'t SyntaxTree,
    /// Every error found so far, in the order found. Problems that leave the
    /// rest of an instruction checkable (a bad flag, a bad mount) are
    /// reported here and checking goes on; an instruction with any error is
    /// left out of the typed Dockerfile.
    errors: RefCell<Vec<Error>>,
}

impl Ctx<'_> {
    fn report(&self, err: Error) {
        self.errors.borrow_mut().push(err);
    }

    fn error_count(&self) -> usize {
        self.errors.borrow().len()
    }

    /// Type one instruction; `None` (its errors reported) when it is bad.
    fn typed(&self, node: &Node) -> Option<InstructionKind> {
        let before = self.error_count();
        match instruction(self, node, false) {
            Ok(kind) if self.error_count() == before => Some(kind),
            Ok(_) => None,
            Err(e) => {
                self.report(e);
                None
            }
        }
    }

    fn err(&self, node: &Node, span: Span, message: String, help: Option<String>) -> Error {
        let _ = node;
        Error::instruction(message, self.tree.locate(span), help)
    }

    fn err_keyword(&self, node: &Node, message: String, help: Option<String>) -> Error {
        self.err(node, node.keyword_span(), message, help)
    }
}

/// The closest candidate to `word`, if close enough to suggest.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()),
                *c,
            )
        })
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Typed flags of one instruction.
struct Flags<'n> {
    /// Name, value and span of each accepted flag, borrowed from the node.
    values: Vec<(&'n str, Option<&'n str>, Span)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Bool,
    String,
    List,
}

impl<'n> Flags<'n> {
    fn parse(
        cx: &Ctx<'_>,
        node: &'n Node,
        instruction: &str,
        allowed: &[(&str, FlagKind)],
    ) -> Flags<'n> {
        let mut values: Vec<(&'n str, Option<&'n str>, Span)> = Vec::new();
        for raw in &node.flags {
            let span = node.find_span(raw);
            // Rule `flag`.
            let (name, value) =
                grammar::flag(raw).unwrap_or_else(|| (raw.trim_start_matches('-'), None));
            let Some((_, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
                let help = match did_you_mean(name, &names) {
                    Some(s) => Some(format!("did you mean `--{s}`?")),
                    None if names.is_empty() => Some(format!("{instruction} takes no flags")),
                    None => Some(format!(
                        "{instruction} accepts {}",
                        names
                            .iter()
                            .map(|n| format!("--{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                };
                cx.report(cx.err(
                    node,
                    span,
                    format!("unknown flag `--{name}` for {instruction}"),
                    help,
                ));
                continue;
            };
            match kind {
                FlagKind::Bool => {
                    if let Some(v) = value
                        && !matches!(
                            v.to_ascii_lowercase().as_str(),
                            "true" | "false" | "1" | "0"
                        )
                    {
                        cx.report(cx.err(
                            node,
                            span,
                            format!("expecting boolean value for flag `--{name}`, not `{v}`"),
                            Some(format!("write `--{name}` or `--{name}=false`")),
                        ));
                        continue;
                    }
                }
                FlagKind::String | FlagKind::List => {
                    if value.is_none() {
                        cx.report(cx.err(
                            node,
                            span,
                            format!("missing a value on flag `--{name}` of {instruction}"),
                            Some(format!("write `--{name}=VALUE`")),
                        ));
                        continue;
                    }
                }
            }
            if *kind != FlagKind::List && values.iter().any(|(n, _, _)| *n == name) {
                cx.report(cx.err(
                    node,
                    span,
                    format!("duplicate flag specified: `--{name}`"),
                    None,
                ));
                continue;
            }
            values.push((name, value, span));
        }
        Flags { values }
    }

    fn string(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(n, _, _)| *n == name)
            .and_then(|(_, v, _)| v.map(str::to_string))
    }

    fn bool(&self, name: &str) -> bool {
        self.values.iter().any(|(n, v, _)| {
            *n == name && v.is_none_or(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"))
        })
    }

    fn opt_bool(&self, name: &str) -> Option<bool> {
        self.values
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|_| self.bool(name))
    }

    fn list(&self, name: &str) -> Vec<(&'n str, Span)> {
        self.values
            .iter()
            .filter(|(n, _, _)| *n == name)
            .filter_map(|(_, v, s)| v.map(|v| (v, *s)))
            .collect()
    }

    fn span(&self, name: &str) -> Option<Span> {
        self.values
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, s)| *s)
    }
}

/// Parse a RUN `--mount` value (unexpanded) as BuildKit validates it.
pub fn parse_mount(raw: &str) -> Result<Mount, String> {
    let pairs = DockerfileGrammar::parse(Rule::mount_spec, raw)
        .map_err(|_| format!("invalid mount `{raw}`; expected comma-separated key=value fields"))?;
    let mut fields: Vec<(String, Option<String>)> = Vec::new();
    for field in pairs.flatten().filter(|p| p.as_rule() == Rule::mount_field) {
        let mut key = String::new();
        let mut value = None;
        for p in field.into_inner().flatten() {
            match p.as_rule() {
                Rule::mount_key => key = p.as_str().trim().to_ascii_lowercase(),
                Rule::mount_quoted => {
                    let s = p.as_str();
                    value = Some(s[1..s.len() - 1].replace("\"\"", "\""));
                }
                Rule::mount_plain => value = Some(p.as_str().to_string()),
                _ => {}
            }
        }
        fields.push((key, value));
    }
    let mut kind = MountType::Bind;
    for (k, v) in &fields {
        if k == "type" {
            kind = match v.as_deref().unwrap_or("") {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                other => {
                    let help = did_you_mean(other, &["bind", "cache", "tmpfs", "secret", "ssh"])
                        .map_or_else(String::new, |s| format!("; did you mean `{s}`?"));
                    return Err(format!("unsupported mount type `{other}`{help}"));
                }
            };
        }
    }
    let mut m = Mount {
        kind,
        target: None,
        source: None,
        from: None,
        readonly: false,
        id: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        size: None,
        env: None,
        raw: raw.to_string(),
    };
    let parse_bool = |k: &str, v: &Option<String>| -> Result<bool, String> {
        match v.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(format!(
                "invalid value for {k}: `{other}` (expected true or false)"
            )),
        }
    };
    let need = |k: &str, v: &Option<String>| -> Result<String, String> {
        v.clone()
            .ok_or_else(|| format!("mount option `{k}` needs a value: `{k}=…`"))
    };
    let number = |k: &str, v: &Option<String>| -> Result<u32, String> {
        let s = need(k, v)?;
        s.parse()
            .map_err(|_| format!("invalid {k} `{s}`: expected a number"))
    };
    let allowed: &[&str] = match kind {
        MountType::Bind => &[
            "type",
            "target",
            "dst",
            "destination",
            "source",
            "src",
            "from",
            "readonly",
            "ro",
            "readwrite",
            "rw",
            "bind-propagation",
        ],
        MountType::Cache => &[
            "type",
            "target",
            "dst",
            "destination",
            "source",
            "src",
            "from",
            "readonly",
            "ro",
            "readwrite",
            "rw",
            "id",
            "sharing",
            "mode",
            "uid",
            "gid",
        ],
        MountType::Tmpfs => &["type", "target", "dst", "destination", "size", "tmpfs-size"],
        MountType::Secret => &[
            "type",
            "target",
            "dst",
            "destination",
            "id",
            "required",
            "mode",
            "uid",
            "gid",
            "env",
        ],
        MountType::Ssh => &[
            "type",
            "target",
            "dst",
            "destination",
            "id",
            "required",
            "mode",
            "uid",
            "gid",
        ],
    };
    for (k, v) in &fields {
        if !allowed.contains(&k.as_str()) {
            let help = did_you_mean(k, allowed)
                .map_or_else(String::new, |s| format!("; did you mean `{s}`?"));
            return Err(format!(
                "unexpected key `{k}` for a {} mount{help}",
                kind.name()
            ));
        }
        match k.as_str() {
            "target" | "dst" | "destination" => m.target = Some(need(k, v)?),
            "source" | "src" => m.source = Some(need(k, v)?),
            "from" => m.from = Some(need(k, v)?),
            "readonly" | "ro" => m.readonly = parse_bool(k, v)?,
            "readwrite" | "rw" => m.readonly = !parse_bool(k, v)?,
            "bind-propagation" => {
                need(k, v)?;
            }
            "id" => m.id = Some(need(k, v)?),
            "sharing" => {
                m.sharing = Some(match need(k, v)?.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    other => {
                        return Err(format!(
                            "unsupported sharing value `{other}`; expected shared, private or locked"
                        ));
                    }
                });
            }
            "mode" => {
                let s = need(k, v)?;
                m.mode = Some(u32::from_str_radix(&s, 8).map_err(|_| {
                    format!("invalid mode `{s}`: expected an octal number like 0644")
                })?);
            }
            "uid" => m.uid = Some(number(k, v)?),
            "gid" => m.gid = Some(number(k, v)?),
            "required" => m.required = parse_bool(k, v)?,
            "size" | "tmpfs-size" => {
                let s = need(k, v)?;
                m.size =
                    Some(parse_size(&s).ok_or_else(|| {
                        format!("invalid size `{s}`: expected bytes or e.g. 64m")
                    })?);
            }
            "env" => m.env = Some(need(k, v)?),
            _ => {}
        }
    }
    match kind {
        MountType::Bind | MountType::Cache | MountType::Tmpfs => {
            if m.target.is_none() {
                return Err(format!(
                    "a {} mount needs a target: `target=/path`",
                    kind.name()
                ));
            }
        }
        MountType::Secret => {
            if m.id.is_none() && m.target.is_none() && m.env.is_none() {
                return Err("a secret mount needs an id or a target".into());
            }
            if m.id.is_none() {
                m.id = m
                    .target
                    .as_deref()
                    .map(|t| t.rsplit('/').next().unwrap_or(t).to_string());
            }
            if m.target.is_none() && m.env.is_none() {
                m.target = m.id.as_ref().map(|id| format!("/run/secrets/{id}"));
            }
        }
        MountType::Ssh => {
            if m.id.is_none() {
                m.id = Some("default".into());
            }
        }
    }
    if kind == MountType::Cache && m.sharing.is_none() {
        m.sharing = Some(CacheSharing::Shared);
    }
    Ok(m)
}

fn parse_size(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches('b');
    let (digits, mult) = match trimmed.chars().last()? {
        'k' => (&trimmed[..trimmed.len() - 1], 1u64 << 10),
        'm' => (&trimmed[..trimmed.len() - 1], 1 << 20),
        'g' => (&trimmed[..trimmed.len() - 1], 1 << 30),
        _ => (trimmed, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

fn meta_of(node: &Node) -> Meta {
    Meta {
        span: node.span,
        start_line: node.start_line,
        end_line: node.end_line,
        keyword: node.keyword.clone(),
        original: node.original.clone(),
    }
}

fn key_values(node: &Node) -> Vec<KeyValue> {
    node.args
        .chunks(3)
        .map(|c| KeyValue {
            key: c.first().cloned().unwrap_or_default(),
            value: c.get(1).cloned().unwrap_or_default(),
            legacy: c.get(2).is_some_and(String::is_empty),
        })
        .collect()
}

const COPY_FLAGS: &[(&str, FlagKind)] = &[
    ("from", FlagKind::String),
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("parents", FlagKind::Bool),
    ("exclude", FlagKind::List),
];

const ADD_FLAGS: &[(&str, FlagKind)] = &[
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("exclude", FlagKind::List),
    ("checksum", FlagKind::String),
    ("keep-git-dir", FlagKind::Bool),
    ("unpack", FlagKind::Bool),
];

fn exactly_one(cx: &Ctx<'_>, node: &Node, name: &str) -> Result<String, Error> {
    match node.args.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(cx.err_keyword(node, format!("{name} requires exactly one argument"), None)),
        _ => Err(cx.err_keyword(
            node,
            format!(
                "{name} requires exactly one argument, got {}",
                node.args.len()
            ),
            if name == "WORKDIR" || name == "USER" {
                Some("quote the value if it contains spaces".into())
            } else {
                None
            },
        )),
    }
}

fn no_flags(cx: &Ctx<'_>, node: &Node, name: &str) {
    Flags::parse(cx, node, name, &[]);
}

/// Type one syntax node (not FROM).
fn instruction(cx: &Ctx<'_>, node: &Node, nested: bool) -> Result<InstructionKind, Error> {
    // The upper-case name for messages, without an allocation per instruction.
    let upper;
    let name: &str = if let Some(known) = INSTRUCTIONS
        .iter()
        .find(|i| i.eq_ignore_ascii_case(&node.cmd))
    {
        known
    } else {
        upper = node.cmd.to_ascii_uppercase();
        &upper
    };
    Ok(match node.cmd.as_str() {
        "run" => {
            let flags = Flags::parse(
                cx,
                node,
                "RUN",
                &[
                    ("mount", FlagKind::List),
                    ("network", FlagKind::String),
                    ("security", FlagKind::String),
                ],
            );
            let mut mounts = Vec::new();
            for (raw, span) in flags.list("mount") {
                match parse_mount(raw) {
                    Ok(m) => mounts.push(m),
                    Err(m) => cx.report(cx.err(node, span, m, None)),
                }
            }
            let network = match flags.string("network") {
                None => None,
                Some(v) => match v.as_str() {
                    "default" => Some(NetworkMode::Default),
                    "none" => Some(NetworkMode::None),
                    "host" => Some(NetworkMode::Host),
                    other => {
                        cx.report(cx.err(
                            node,
                            flags.span("network").unwrap_or_default(),
                            format!("unsupported network mode `{other}`"),
                            Some("use --network=default, none or host".into()),
                        ));
                        None
                    }
                },
            };
            let security = match flags.string("security") {
                None => None,
                Some(v) => match v.as_str() {
                    "sandbox" => Some(SecurityMode::Sandbox),
                    "insecure" => Some(SecurityMode::Insecure),
                    other => {
                        cx.report(cx.err(
                            node,
                            flags.span("security").unwrap_or_default(),
                            format!("unsupported security mode `{other}`"),
                            Some("use --security=sandbox or insecure".into()),
                        ));
                        None
                    }
                },
            };
            if node.args.is_empty() && !node.json {
                return Err(cx.err_keyword(
                    node,
                    "RUN requires a command".into(),
                    Some("write `RUN command args…`".into()),
                ));
            }
            InstructionKind::Run(Run {
                command: ShellOrExec::from_node(node),
                heredocs: node.heredocs.clone(),
                mounts,
                network,
                security,
            })
        }
        "cmd" | "entrypoint" => {
            no_flags(cx, node, name);
            let v = ShellOrExec::from_node(node);
            if node.cmd == "cmd" {
                InstructionKind::Cmd(v)
            } else {
                InstructionKind::Entrypoint(v)
            }
        }
        "shell" => {
            no_flags(cx, node, "SHELL");
            if !node.json {
                return Err(cx.err_keyword(
                    node,
                    "SHELL requires the arguments to be in JSON form".into(),
                    Some("write `SHELL [\"/bin/sh\", \"-c\"]`".into()),
                ));
            }
            if node.args.is_empty() {
                return Err(cx.err_keyword(
                    node,
                    "SHELL requires at least one argument".into(),
                    None,
                ));
            }
            InstructionKind::Shell(node.args.clone())
        }
        "copy" | "add" => {
            let is_copy = node.cmd == "copy";
            let flags = Flags::parse(cx, node, name, if is_copy { COPY_FLAGS } else { ADD_FLAGS });
            if node.args.len() < 2 {
                let msg = if node.args.is_empty() {
                    format!("{name} requires at least two arguments")
                } else {
                    format!(
                        "{name} requires at least two arguments, but only one was provided. Destination could not be determined"
                    )
                };
                return Err(cx.err_keyword(
                    node,
                    msg,
                    Some(format!("write `{name} SOURCE… DEST`")),
                ));
            }
            let (dest, sources) = node
                .args
                .split_last()
                .map(|(d, s)| (d.clone(), s.to_vec()))
                .unwrap_or_default();
            let c = Copy {
                sources,
                dest,
                heredocs: node.heredocs.clone(),
                json: node.json,
                from: flags.string("from"),
                from_stage: None,
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link"),
                parents: flags.bool("parents"),
                exclude: flags
                    .list("exclude")
                    .into_iter()
                    .map(|(v, _)| v.to_string())
                    .collect(),
                checksum: flags.string("checksum"),
                keep_git_dir: flags.bool("keep-git-dir"),
                unpack: flags.opt_bool("unpack"),
            };
            if let Some(chmod) = &c.chmod
                && !chmod.contains('$')
                && u32::from_str_radix(chmod, 8).is_err()
                && !is_symbolic_chmod(chmod)
            {
                return Err(cx.err(
                    node,
                    flags.span("chmod").unwrap_or_default(),
                    format!("invalid --chmod value `{chmod}`"),
                    Some("use an octal mode such as 0755, or u+x style".into()),
                ));
            }

            if is_copy {
                InstructionKind::Copy(c)
            } else {
                InstructionKind::Add(c)
            }
        }
        "env" | "label" => {
            no_flags(cx, node, name);
            let pairs = key_values(node);
            if pairs.is_empty() {
                return Err(cx.err_keyword(
                    node,
                    format!("{name} requires at least one argument"),
                    Some(format!("write `{name} key=value`")),
                ));
            }
            if let Some(p) = pairs.iter().find(|p| p.key.is_empty()) {
                return Err(cx.err(
                    node,
                    node.find_span(&format!("={}", p.value)),
                    format!("{name} names can not be blank"),
                    None,
                ));
            }
            if node.cmd == "env" {
                InstructionKind::Env(pairs)
            } else {
                InstructionKind::Label(pairs)
            }
        }
        "arg" => {
            no_flags(cx, node, "ARG");
            if node.args.is_empty() {
                return Err(cx.err_keyword(
                    node,
                    "ARG requires at least one argument".into(),
                    Some("write `ARG NAME[=default]`".into()),
                ));
            }
            let mut defs = Vec::new();
            for word in &node.args {
                let (name, default) = match word.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (word.clone(), None),
                };
                if name.is_empty() {
                    return Err(cx.err(
                        node,
                        node.find_span(word),
                        "ARG names can not be blank".into(),
                        None,
                    ));
                }
                defs.push(ArgDef { name, default });
            }
            InstructionKind::Arg(defs)
        }
        "expose" => {
            no_flags(cx, node, "EXPOSE");
            if node.args.is_empty() {
                return Err(cx.err_keyword(
                    node,
                    "EXPOSE requires at least one argument".into(),
                    None,
                ));
            }
            for port in node.args.iter().filter(|p| !p.contains('$')) {
                // `ip:host:container` is accepted (the ExposeInvalidFormat check reports it).
                let container = port.rsplit(':').next().unwrap_or(port);
                parse_port(container).map_err(|m| cx.err(node, node.find_span(port), m, None))?;
            }
            InstructionKind::Expose(node.args.clone())
        }
        "volume" => {
            no_flags(cx, node, "VOLUME");
            if node.args.is_empty() {
                return Err(cx.err_keyword(
                    node,
                    "VOLUME requires at least one argument".into(),
                    None,
                ));
            }
            if node.args.iter().any(|a| a.trim().is_empty()) {
                return Err(cx.err_keyword(
                    node,
                    "VOLUME specified can not be an empty string".into(),
                    None,
                ));
            }
            InstructionKind::Volume(node.args.clone())
        }
        "user" => {
            no_flags(cx, node, "USER");
            InstructionKind::User(exactly_one(cx, node, "USER")?)
        }
        "workdir" => {
            no_flags(cx, node, "WORKDIR");
            InstructionKind::Workdir(exactly_one(cx, node, "WORKDIR")?)
        }
        "stopsignal" => {
            no_flags(cx, node, "STOPSIGNAL");
            InstructionKind::StopSignal(exactly_one(cx, node, "STOPSIGNAL")?)
        }
        "maintainer" => {
            no_flags(cx, node, "MAINTAINER");
            InstructionKind::Maintainer(exactly_one(cx, node, "MAINTAINER")?)
        }
        "healthcheck" => InstructionKind::Healthcheck(healthcheck(cx, node)?),
        "onbuild" => {
            no_flags(cx, node, "ONBUILD");
            let Some(next) = node.next.as_deref() else {
                return Err(cx.err_keyword(
                    node,
                    "ONBUILD requires at least one argument".into(),
                    Some("write `ONBUILD INSTRUCTION …`".into()),
                ));
            };
            if nested {
                return Err(cx.err_keyword(
                    node,
                    "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
                    None,
                ));
            }
            match next.cmd.as_str() {
                "onbuild" => {
                    return Err(cx.err(
                        node,
                        node.find_span(&next.keyword),
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
                        None,
                    ));
                }
                "from" | "maintainer" => {
                    return Err(cx.err(
                        node,
                        node.find_span(&next.keyword),
                        format!(
                            "{} isn't allowed as an ONBUILD trigger",
                            next.cmd.to_ascii_uppercase()
                        ),
                        None,
                    ));
                }
                _ => {}
            }
            let mut inner = next.clone();
            // Locate the trigger's parts in the ONBUILD line itself.
            inner.original.clone_from(&node.original);
            inner.span = node.span;
            inner.segments.clone_from(&node.segments);
            inner.start_line = node.start_line;
            inner.end_line = node.end_line;
            inner.heredocs.clone_from(&node.heredocs);
            let kind = instruction(cx, &inner, true)?;
            let mut meta = meta_of(node);
            meta.keyword.clone_from(&next.keyword);
            meta.original.clone_from(&next.original);
            InstructionKind::Onbuild {
                trigger: Box::new(Instruction { kind, meta }),
                expression: next.original.clone(),
            }
        }
        "from" => return Err(cx.err_keyword(node, "FROM is not allowed here".into(), None)),
        other => {
            let upper: Vec<&str> = INSTRUCTIONS.to_vec();
            let help = did_you_mean(other, &upper).map(|s| format!("did you mean `{s}`?"));
            return Err(cx.err_keyword(
                node,
                format!("unknown instruction: `{}`", node.keyword),
                help,
            ));
        }
    })
}

fn is_symbolic_chmod(s: &str) -> bool {
    !s.is_empty()
        && s.split(',').all(|clause| {
            let body = clause.trim_start_matches(['u', 'g', 'o', 'a']);
            let Some(op) = body.chars().next() else {
                return false;
            };
            matches!(op, '+' | '-' | '=') && body[1..].chars().all(|c| "rwxXst".contains(c))
        })
}

fn healthcheck(cx: &Ctx<'_>, node: &Node) -> Result<Healthcheck, Error> {
    let flags = Flags::parse(
        cx,
        node,
        "HEALTHCHECK",
        &[
            ("interval", FlagKind::String),
            ("timeout", FlagKind::String),
            ("start-period", FlagKind::String),
            ("start-interval", FlagKind::String),
            ("retries", FlagKind::String),
        ],
    );
    let Some(typ) = node.args.first() else {
        return Err(cx.err_keyword(
            node,
            "HEALTHCHECK requires an argument".into(),
            Some("write `HEALTHCHECK CMD command` or `HEALTHCHECK NONE`".into()),
        ));
    };
    match typ.to_ascii_uppercase().as_str() {
        "NONE" => {
            if node.args.len() > 1 {
                return Err(cx.err_keyword(
                    node,
                    "HEALTHCHECK NONE takes no arguments".into(),
                    None,
                ));
            }
            if !flags.values.is_empty() {
                return Err(cx.err_keyword(node, "HEALTHCHECK NONE takes no options".into(), None));
            }
            Ok(Healthcheck::None)
        }
        "CMD" => {
            if node.args.len() < 2 {
                return Err(cx.err_keyword(
                    node,
                    "Missing command after HEALTHCHECK CMD".into(),
                    None,
                ));
            }
            let test = if node.json {
                ShellOrExec::Exec(node.args[1..].to_vec())
            } else {
                ShellOrExec::Shell(node.args[1].clone())
            };
            let duration = |name: &str| -> Result<Option<Duration>, Error> {
                let Some(v) = flags.string(name) else {
                    return Ok(None);
                };
                let span = flags.span(name).unwrap_or_default();
                let d = parse_duration(&v)
                    .map_err(|m| cx.err(node, span, format!("--{name}: {m}"), None))?;
                if !d.is_zero() && d < Duration::from_millis(1) {
                    return Err(cx.err(
                        node,
                        span,
                        format!("--{name} cannot be less than 1ms"),
                        None,
                    ));
                }
                Ok(Some(d))
            };
            let retries = match flags.string("retries") {
                None => None,
                Some(v) => Some(v.parse::<u32>().map_err(|_| {
                    cx.err(
                        node,
                        flags.span("retries").unwrap_or_default(),
                        format!("--retries must be a non-negative number, not `{v}`"),
                        None,
                    )
                })?),
            };
            Ok(Healthcheck::Cmd {
                test,
                interval: duration("interval")?,
                timeout: duration("timeout")?,
                start_period: duration("start-period")?,
                start_interval: duration("start-interval")?,
                retries,
            })
        }
        other => Err(cx.err(
            node,
            node.find_span(typ),
            format!("unknown type `{other}` in HEALTHCHECK"),
            Some("try CMD (or NONE)".into()),
        )),
    }
}

/// BuildKit's stage-name rule: a letter, then letters, digits, `-`, `_`, `.`.
pub fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// The stage a `FROM` opens. A bad `FROM` is reported and still opens a
/// stage (unnamed, its base as written), so that what follows is checked
/// against the right stage.
fn from_stage(cx: &Ctx<'_>, node: &Node, index: usize) -> Stage {
    let flags = Flags::parse(cx, node, "FROM", &[("platform", FlagKind::String)]);
    let (base_name, mut name_written) = match node.args.as_slice() {
        [image] => (image.clone(), None),
        [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
            (image.clone(), Some(name.clone()))
        }
        [] => {
            cx.report(cx.err_keyword(
                node,
                "FROM requires either one or three arguments".into(),
                Some("write `FROM image [AS name]`".into()),
            ));
            (String::new(), None)
        }
        [image, second, ..] => {
            let span = node.find_span(second);
            cx.report(cx.err(
                node,
                span,
                "FROM requires either one or three arguments".into(),
                Some("write `FROM image [AS name]`".into()),
            ));
            (image.clone(), None)
        }
    };
    let mut name = name_written.as_ref().map(|n| n.to_lowercase());
    if let Some(n) = &name
        && !valid_stage_name(n)
    {
        cx.report(cx.err(
            node,
            node.find_span(name_written.as_deref().unwrap_or_default()),
            format!("invalid name for build stage: `{n}`, name can't start with a number or contain symbols"),
            Some("use letters, digits, `-`, `_` and `.`, starting with a letter".into()),
        ));
        name = None;
        name_written = None;
    }
    Stage {
        index,
        name,
        name_as_written: name_written,
        base_name: base_name.clone(),
        base: Base::Image(base_name),
        platform: flags.string("platform"),
        from: meta_of(node),
        instructions: Vec::new(),
    }
}

impl Dockerfile {
    /// Build the typed Dockerfile from a syntax tree; the first error if
    /// anything is wrong.
    pub fn from_tree(tree: SyntaxTree) -> Result<Dockerfile, Error> {
        Dockerfile::from_tree_all(tree).map_err(|mut errors| errors.swap_remove(0))
    }

    /// Build the typed Dockerfile from a syntax tree, or report every error
    /// found (in instruction order; never an empty list): each bad
    /// instruction, each unknown or bad flag, each bad mount. A bad `FROM`
    /// still opens a stage, so the instructions under it are checked too.
    pub fn from_tree_all(tree: SyntaxTree) -> Result<Dockerfile, Vec<Error>> {
        let cx = Ctx {
            tree: &tree,
            errors: RefCell::new(Vec::new()),
        };
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::with_capacity(tree.instructions.len() / 8 + 1);
        for node in &tree.instructions {
            if node.cmd == "from" {
                stages.push(from_stage(&cx, node, stages.len()));
                continue;
            }
            let Some(stage) = stages.last_mut() else {
                if node.cmd == "arg" {
                    if let Some(kind) = cx.typed(node) {
                        global_args.push(Instruction {
                            kind,
                            meta: meta_of(node),
                        });
                    }
                    continue;
                }
                let known = INSTRUCTIONS
                    .iter()
                    .any(|i| i.eq_ignore_ascii_case(&node.cmd));
                if !known {
                    // Its own error (unknown instruction) says more.
                    cx.typed(node);
                    continue;
                }
                cx.report(cx.err_keyword(
                    node,
                    format!(
                        "{} instruction before the first FROM",
                        node.keyword.to_ascii_uppercase()
                    ),
                    Some(
                        "only ARG may come before the first FROM; start a stage with `FROM image`"
                            .into(),
                    ),
                ));
                continue;
            };
            if let Some(kind) = cx.typed(node) {
                stage.instructions.push(Instruction {
                    kind,
                    meta: meta_of(node),
                });
            }
        }
        let mut errors = cx.errors.into_inner();
        if stages.is_empty() {
            if !errors.is_empty() {
                return Err(errors);
            }
            let last = tree
                .instructions
                .last()
                .map(Node::keyword_span)
                .unwrap_or_default();
            return Err(vec![Error::instruction(
                "the Dockerfile has no FROM instruction".into(),
                tree.locate(last),
                Some("start a build stage with `FROM image` (or `FROM scratch`)".into()),
            )]);
        }
        let mut df = Dockerfile {
            escape: tree.escape,
            directives: tree
                .directives
                .iter()
                .map(|d| (d.name.clone(), d.value.clone()))
                .collect(),
            global_args,
            stages,
            tree,
            stage_index: HashMap::new(),
        };
        for st in &df.stages {
            if let Some(name) = &st.name {
                df.stage_index.entry(name.clone()).or_insert(st.index);
            }
        }
        errors.extend(df.resolve());
        if errors.is_empty() {
            Ok(df)
        } else {
            Err(errors)
        }
    }

    /// Parse and type in one go.
    pub fn parse(input: &[u8]) -> Result<Dockerfile, Error> {
        Dockerfile::from_tree(crate::syntax::parse(input)?)
    }

    /// The global ARG defaults (`ARG X=1` before the first FROM), expanded in order.
    pub fn global_arg_defaults(&self) -> HashMap<String, String> {
        self.global_args_with(&HashMap::new())
    }

    /// The global ARG values given build arguments (`--build-arg`), as
    /// BuildKit computes them for FROM lines.
    pub fn global_args_with(
        &self,
        build_args: &HashMap<String, String>,
    ) -> HashMap<String, String> {
        let lexer = Lexer::new(self.escape);
        let mut env: HashMap<String, String> = HashMap::new();
        for ins in &self.global_args {
            if let InstructionKind::Arg(defs) = &ins.kind {
                for d in defs {
                    if let Some(v) = build_args.get(&d.name) {
                        env.insert(d.name.clone(), v.clone());
                    } else if let Some(default) = &d.default {
                        let v = lexer
                            .process_word(default, &env)
                            .unwrap_or_else(|_| default.clone());
                        env.insert(d.name.clone(), v);
                    }
                }
            }
        }
        env
    }

    /// Resolve a stage's base with global ARG values: `scratch`, an earlier
    /// stage (by name, case-insensitively), or an image.
    pub fn resolve_base(
        &self,
        stage: usize,
        global_args: &HashMap<String, String>,
    ) -> Result<Base, Error> {
        let Some(st) = self.stages.get(stage) else {
            return Err(Error::instruction(
                format!("no stage {stage}"),
                Location::default(),
                None,
            ));
        };
        let lexer = Lexer::new(self.escape);
        let name = lexer
            .process_word(&st.base_name, global_args)
            .map_err(|e| {
                Error::instruction(
                    format!("FROM: {}", e.reason),
                    self.tree.locate(self.locate_in(&st.from, &st.base_name)),
                    None,
                )
            })?;
        if name.is_empty() {
            return Err(Error::instruction(
                format!("base name ({}) should not be blank", st.base_name),
                self.tree.locate(self.locate_in(&st.from, &st.base_name)),
                Some("give the ARG a default or pass --build-arg".into()),
            ));
        }
        if name.eq_ignore_ascii_case("scratch") {
            return Ok(Base::Scratch);
        }
        if let Some(prev) = self.named_stage_before(&name, stage) {
            return Ok(Base::Stage(prev));
        }
        Ok(Base::Image(name))
    }

    /// The index of the stage named (or numbered) `name` that is defined
    /// before stage `before`, as COPY --from and RUN --mount from= resolve it.
    pub fn stage_ref(&self, name: &str, before: usize) -> Option<usize> {
        if let Some(s) = self.named_stage_before(name, before) {
            return Some(s);
        }
        match name.parse::<usize>() {
            Ok(i) if i < before => Some(i),
            _ => None,
        }
    }

    /// The first stage named `name` (case-insensitively), if it comes
    /// before stage `before`.
    fn named_stage_before(&self, name: &str, before: usize) -> Option<usize> {
        let i = *self.stage_index.get(&name.to_lowercase())?;
        (i < before.min(self.stages.len())).then_some(i)
    }

    /// The stage built by `--target NAME` (or the last stage).
    pub fn target(&self, name: Option<&str>) -> Option<usize> {
        match name {
            None => self.stages.len().checked_sub(1),
            Some(n) => self.stage_index.get(&n.to_lowercase()).copied(),
        }
    }

    fn locate_in(&self, meta: &Meta, needle: &str) -> Span {
        let node = self.tree.instruction_at(meta.span);
        node.map_or(meta.span, |n| n.find_span(needle))
    }

    /// Resolve stage bases and `COPY --from` references; the errors found.
    fn resolve(&mut self) -> Vec<Error> {
        let mut errors = Vec::new();
        let globals = self.global_arg_defaults();
        for i in 0..self.stages.len() {
            let base = self
                .resolve_base(i, &globals)
                .unwrap_or_else(|_| Base::Image(self.stages[i].base_name.clone()));
            self.stages[i].base = base;
        }
        for i in 0..self.stages.len() {
            let mut resolved = Vec::new();
            for (j, ins) in self.stages[i].instructions.iter().enumerate() {
                if let InstructionKind::Copy(c) = &ins.kind
                    && let Some(from) = &c.from
                {
                    if from.eq_ignore_ascii_case(self.stages[i].name.as_deref().unwrap_or("\u{0}"))
                    {
                        errors.push(Error::instruction(
                            format!("COPY --from={from} refers to the stage it is in"),
                            self.tree.locate(self.locate_in(&ins.meta, from)),
                            Some("a stage can copy only from earlier stages".into()),
                        ));
                        continue;
                    }
                    resolved.push((j, self.stage_ref(from, i)));
                }
            }
            for (j, stage) in resolved {
                if let InstructionKind::Copy(c) = &mut self.stages[i].instructions[j].kind {
                    c.from_stage = stage;
                }
            }
        }
        errors
    }
}

/// The words of an ENV/LABEL/ARG value list, as BuildKit's parser splits them.
pub fn words(text: &str, escape: char) -> Vec<String> {
    parse_words(text, escape)
}
