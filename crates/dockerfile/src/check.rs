//! Build checks that need no build: BuildKit's Dockerfile linter rules that
//! can be decided from the Dockerfile alone.
//!
//! [`check`] runs every rule over a typed [`Dockerfile`] and returns
//! [`Finding`]s with a location, BuildKit's message and a one-line fix. The
//! `# check=skip=Rule1,Rule2;error=true` directive (or `skip=all`) is
//! honoured: skipped rules are dropped, and with `error=true` every finding
//! is an error.
//!
//! Not decided here (they need the base image or the context):
//! InvalidBaseImagePlatform, CopyIgnoredFile. UndefinedVar cannot know the
//! environment of an external base image, so for such stages it reports a
//! variable only when nothing in the Dockerfile defines it and it is not one
//! every image has (`PATH`).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::error::Location;
use crate::ir::{Base, Dockerfile, Instruction, InstructionKind, Stage, did_you_mean, parse_port};
use crate::shell::Lexer;
use crate::syntax::{Node, Span};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Reported; the check still passes.
    Warning,
    /// Fails the check (`# check=error=true`).
    Error,
}

/// One problem found by a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule's name, e.g. `StageNameCasing`.
    pub rule: &'static str,
    /// BuildKit's message for this occurrence.
    pub message: String,
    /// What the rule is about.
    pub description: &'static str,
    /// Where to read more.
    pub url: String,
    /// Where the problem is.
    pub location: Location,
    /// How to fix it, one line.
    pub fix: String,
    /// Warning, or error under `# check=error=true`.
    pub severity: Severity,
}

/// Every rule [`check`] knows: (name, description).
pub const RULES: &[(&str, &str)] = &[
    ("StageNameCasing", "Stage names should be lowercase"),
    (
        "FromAsCasing",
        "The 'as' keyword should match the case of the 'from' keyword",
    ),
    (
        "NoEmptyContinuation",
        "Empty continuation lines will become errors in a future release",
    ),
    (
        "ConsistentInstructionCasing",
        "All commands within the Dockerfile should use the same casing (either upper or lower)",
    ),
    ("DuplicateStageName", "Stage names should be unique"),
    (
        "ReservedStageName",
        "Reserved words should not be used as stage names",
    ),
    (
        "JSONArgsRecommended",
        "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
    ),
    (
        "MaintainerDeprecated",
        "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
    ),
    ("UndefinedArgInFrom", "FROM command must use declared ARGs"),
    (
        "WorkdirRelativePath",
        "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
    ),
    (
        "UndefinedVar",
        "Variables should be defined before their use",
    ),
    (
        "MultipleInstructionsDisallowed",
        "Multiple instructions of the same type should not be used in the same stage",
    ),
    (
        "LegacyKeyValueFormat",
        "Legacy key/value format with whitespace separator should not be used",
    ),
    (
        "RedundantTargetPlatform",
        "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
    ),
    (
        "SecretsUsedInArgOrEnv",
        "Sensitive data should not be used in the ARG or ENV commands",
    ),
    (
        "InvalidDefaultArgInFrom",
        "Default value for global ARG results in an empty or invalid base image name",
    ),
    (
        "FromPlatformFlagConstDisallowed",
        "FROM --platform flag should not use a constant value",
    ),
    (
        "ExposeProtoCasing",
        "Protocol in EXPOSE instruction should be lowercase",
    ),
    (
        "ExposeInvalidFormat",
        "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release",
    ),
];

/// The `# check=` directive, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// Rules not to run (`skip=A,B`).
    pub skip: Vec<String>,
    /// `skip=all`.
    pub skip_all: bool,
    /// `error=true`: findings fail the check.
    pub error: bool,
}

impl CheckConfig {
    /// Parse a `check` directive value: `skip=A,B;error=true`.
    pub fn parse(value: &str) -> Result<CheckConfig, String> {
        let mut cfg = CheckConfig::default();
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!(
                    "invalid check directive part `{part}`; expected key=value"
                ));
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "skip" => {
                    for rule in v.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        if rule.eq_ignore_ascii_case("all") {
                            cfg.skip_all = true;
                        } else {
                            cfg.skip.push(rule.to_string());
                        }
                    }
                }
                "error" => {
                    cfg.error = match v.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        other => {
                            return Err(format!(
                                "invalid check directive error value `{other}`; expected true or false"
                            ));
                        }
                    };
                }
                // `experimental=` selects experimental rules; none are implemented.
                "experimental" => {}
                other => {
                    return Err(format!(
                        "invalid check directive key `{other}`; expected skip or error"
                    ));
                }
            }
        }
        Ok(cfg)
    }

    fn skips(&self, rule: &str) -> bool {
        self.skip_all || self.skip.iter().any(|s| s.eq_ignore_ascii_case(rule))
    }
}

fn url(rule: &str) -> String {
    let mut slug = String::new();
    for (i, c) in rule.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = rule.as_bytes()[i - 1];
            if !prev.is_ascii_uppercase()
                || rule
                    .as_bytes()
                    .get(i + 1)
                    .is_some_and(u8::is_ascii_lowercase)
            {
                slug.push('-');
            }
        }
        slug.push(c.to_ascii_lowercase());
    }
    format!("https://docs.docker.com/go/dockerfile/rule/{slug}/")
}

struct Checker<'d> {
    df: &'d Dockerfile,
    findings: Vec<Finding>,
}

/// Variables every build defines without an ARG of the user's.
const AUTOMATIC: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "all_proxy",
];

impl Checker<'_> {
    fn node(&self, span: Span) -> Option<&Node> {
        self.df.tree.instruction_at(span)
    }

    fn at(&self, span: Span, needle: Option<&str>) -> Location {
        let s = match (self.node(span), needle) {
            (Some(n), Some(text)) => n.find_span(text),
            (Some(n), None) => n.keyword_span(),
            (None, _) => span,
        };
        self.df.tree.locate(s)
    }

    fn report(&mut self, rule: &'static str, message: String, location: Location, fix: String) {
        let description = RULES
            .iter()
            .find(|(n, _)| *n == rule)
            .map_or("", |(_, d)| d);
        self.findings.push(Finding {
            rule,
            message,
            description,
            url: url(rule),
            location,
            fix,
            severity: Severity::Warning,
        });
    }

    fn casing(&mut self) {
        let mut upper = 0;
        let mut lower = 0;
        for n in &self.df.tree.instructions {
            if n.keyword == n.keyword.to_uppercase() {
                upper += 1;
            } else if n.keyword == n.keyword.to_lowercase() {
                lower += 1;
            }
        }
        let lower_majority = lower > upper;
        let majority = if lower_majority {
            "lowercase"
        } else {
            "uppercase"
        };
        let nodes: Vec<(String, Span)> = self
            .df
            .tree
            .instructions
            .iter()
            .map(|n| (n.keyword.clone(), n.keyword_span()))
            .collect();
        for (kw, span) in nodes {
            let want = if lower_majority {
                kw.to_lowercase()
            } else {
                kw.to_uppercase()
            };
            if kw != want {
                self.report(
                    "ConsistentInstructionCasing",
                    format!(
                        "Command '{kw}' should match the case of the command majority ({majority})"
                    ),
                    self.df.tree.locate(span),
                    format!("write `{want}`"),
                );
            }
        }
    }

    fn stages(&mut self) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let globals: HashSet<String> = global_arg_names(self.df);
        let defaults = self.df.global_arg_defaults();
        for stage in &self.df.stages {
            let from_span = stage.from.span;
            if let Some(written) = &stage.name_as_written {
                if written != &written.to_lowercase() {
                    self.report(
                        "StageNameCasing",
                        format!("Stage name '{written}' should be lowercase"),
                        self.at(from_span, Some(written)),
                        format!("rename the stage `{}`", written.to_lowercase()),
                    );
                }
                let node = self.node(from_span);
                let from_kw = node.map_or("FROM".to_string(), |n| n.keyword.clone());
                if let Some(as_kw) = node.and_then(|n| n.args.get(1)) {
                    let from_upper = from_kw == from_kw.to_uppercase();
                    let from_lower = from_kw == from_kw.to_lowercase();
                    if (from_upper && *as_kw != as_kw.to_uppercase())
                        || (from_lower && *as_kw != as_kw.to_lowercase())
                    {
                        let want = if from_upper { "AS" } else { "as" };
                        self.report(
                            "FromAsCasing",
                            format!("'{as_kw}' and '{from_kw}' keywords' casing do not match"),
                            self.at(from_span, Some(&format!(" {as_kw} "))),
                            format!("write `{want}`"),
                        );
                    }
                }
                let lower = written.to_lowercase();
                if let Some(first) = seen.get(&lower) {
                    self.report(
                        "DuplicateStageName",
                        format!("Duplicate stage name {lower:?}, stage names should be unique"),
                        self.at(from_span, Some(written)),
                        format!("rename this stage; stage {first} is already called `{lower}`"),
                    );
                } else {
                    seen.insert(lower.clone(), stage.index);
                }
                if matches!(lower.as_str(), "scratch" | "context") {
                    self.report(
                        "ReservedStageName",
                        format!(
                            "Stage name should not use the same name as reserved stage {lower:?}"
                        ),
                        self.at(from_span, Some(written)),
                        format!("rename the stage, e.g. `{lower}-stage`"),
                    );
                }
            }
            // FROM variables.
            let lexer = Lexer::new(self.df.escape);
            let mut texts = vec![stage.base_name.clone()];
            texts.extend(stage.platform.clone());
            for text in &texts {
                let Ok(exp) = lexer.process(text, &|k| {
                    (globals.contains(k) || AUTOMATIC.contains(&k)).then(String::new)
                }) else {
                    continue;
                };
                for var in exp.unmatched {
                    let names: Vec<&str> = globals.iter().map(String::as_str).collect();
                    let suggest = did_you_mean(&var, &names);
                    let mut message = format!("FROM argument '{var}' is not declared");
                    if let Some(s) = suggest {
                        let _ = write!(message, " (did you mean {s}?)");
                    }
                    self.report(
                        "UndefinedArgInFrom",
                        message,
                        self.at(from_span, Some(&var)),
                        suggest.map_or_else(
                            || format!("declare `ARG {var}` before the first FROM"),
                            |s| format!("use `${s}`, or declare `ARG {var}` before the first FROM"),
                        ),
                    );
                }
            }
            if stage.base_name.contains('$') {
                let expanded = lexer
                    .process_word(&stage.base_name, &defaults)
                    .unwrap_or_default();
                if !valid_base_name(&expanded) {
                    self.report(
                        "InvalidDefaultArgInFrom",
                        format!(
                            "Default value for ARG {} results in empty or invalid base image name",
                            stage.base_name
                        ),
                        self.at(from_span, Some(&stage.base_name)),
                        "give the ARG a default that makes a valid image name".into(),
                    );
                }
            }
            if let Some(platform) = &stage.platform {
                if platform == "$TARGETPLATFORM" || platform == "${TARGETPLATFORM}" {
                    self.report(
                        "RedundantTargetPlatform",
                        format!("Setting platform to predefined {platform} in FROM is redundant as this is the default behavior"),
                        self.at(from_span, Some(platform)),
                        "remove the --platform flag".into(),
                    );
                } else if !platform.contains('$') {
                    self.report(
                        "FromPlatformFlagConstDisallowed",
                        format!("FROM --platform flag should not use constant value {platform:?}"),
                        self.at(from_span, Some(platform)),
                        "use a build argument such as $BUILDPLATFORM, or pass --platform to the build".into(),
                    );
                }
            }
            self.stage_body(stage);
        }
    }

    fn stage_body(&mut self, stage: &Stage) {
        let mut last: HashMap<&'static str, Vec<&Instruction>> = HashMap::new();
        let mut has_shell = false;
        let mut abs_workdir = self.inherits_workdir(stage);
        let (mut known, base_known) = self.inherited_env(stage);
        for ins in &stage.instructions {
            let span = ins.meta.span;
            match &ins.kind {
                InstructionKind::Maintainer(_) => self.report(
                    "MaintainerDeprecated",
                    "Maintainer instruction is deprecated in favor of using label".into(),
                    self.at(span, None),
                    "use `LABEL org.opencontainers.image.authors=\"…\"`".into(),
                ),
                InstructionKind::Shell(_) => has_shell = true,
                InstructionKind::Cmd(c) | InstructionKind::Entrypoint(c) => {
                    let name = ins.kind.name();
                    last.entry(name).or_default().push(ins);
                    if !c.is_exec() && !has_shell {
                        self.report(
                            "JSONArgsRecommended",
                            format!("JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"),
                            self.at(span, None),
                            format!("write `{name} [\"executable\", \"arg\"]`"),
                        );
                    }
                }
                InstructionKind::Healthcheck(_) => last.entry("HEALTHCHECK").or_default().push(ins),
                InstructionKind::Workdir(w) => {
                    if w.starts_with('/') || w.starts_with('$') {
                        abs_workdir = true;
                    } else if !abs_workdir {
                        self.report(
                            "WorkdirRelativePath",
                            format!("Relative workdir {w:?} can have unexpected results if the base image changes"),
                            self.at(span, Some(w)),
                            format!("use an absolute path, e.g. `WORKDIR /{w}`"),
                        );
                    }
                }
                InstructionKind::Env(pairs) | InstructionKind::Label(pairs) => {
                    let name = ins.kind.name();
                    if pairs.iter().any(|p| p.legacy) {
                        self.report(
                            "LegacyKeyValueFormat",
                            format!("\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"),
                            self.at(span, None),
                            format!("write `{name} {}={}`", pairs[0].key, quote_if_needed(&pairs[0].value)),
                        );
                    }
                }
                _ => {}
            }
            self.expose(ins);
            self.secrets(ins);
            self.undefined_vars(ins, &known, base_known);
            // Definitions take effect after the instruction that makes them.
            match &ins.kind {
                InstructionKind::Arg(defs) => known.extend(defs.iter().map(|d| d.name.clone())),
                InstructionKind::Env(pairs) => known.extend(pairs.iter().map(|p| p.key.clone())),
                _ => {}
            }
        }
        for (name, list) in last {
            if list.len() > 1 {
                for ins in &list[..list.len() - 1] {
                    self.report(
                        "MultipleInstructionsDisallowed",
                        format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"),
                        self.at(ins.meta.span, None),
                        format!("remove this {name}, or merge it into the last one"),
                    );
                }
            }
        }
    }

    fn inherits_workdir(&self, stage: &Stage) -> bool {
        match stage.base {
            Base::Stage(i) => self.df.stages.get(i).is_some_and(|s| {
                s.instructions.iter().any(
                    |ins| matches!(&ins.kind, InstructionKind::Workdir(w) if w.starts_with('/')),
                ) || self.inherits_workdir(s)
            }),
            _ => false,
        }
    }

    /// Names defined for a stage by its base stages, and whether the base is
    /// fully known (scratch or stages only).
    fn inherited_env(&self, stage: &Stage) -> (HashSet<String>, bool) {
        match stage.base {
            Base::Scratch => (HashSet::new(), true),
            Base::Image(_) => (HashSet::from(["PATH".to_string()]), false),
            Base::Stage(i) => {
                let Some(base) = self.df.stages.get(i).filter(|_| i < stage.index) else {
                    return (HashSet::new(), false);
                };
                let (mut known, complete) = self.inherited_env(base);
                for ins in &base.instructions {
                    if let InstructionKind::Env(pairs) = &ins.kind {
                        known.extend(pairs.iter().map(|p| p.key.clone()));
                    }
                }
                (known, complete)
            }
        }
    }

    fn undefined_vars(&mut self, ins: &Instruction, known: &HashSet<String>, base_known: bool) {
        let texts: Vec<String> = match &ins.kind {
            InstructionKind::Copy(c) | InstructionKind::Add(c) => {
                let mut v = c.sources.clone();
                v.push(c.dest.clone());
                v.extend(c.chown.clone());
                v.extend(c.chmod.clone());
                v.extend(c.from.clone());
                v
            }
            InstructionKind::Env(pairs) | InstructionKind::Label(pairs) => pairs
                .iter()
                .flat_map(|p| [p.key.clone(), p.value.clone()])
                .collect(),
            InstructionKind::Expose(v) | InstructionKind::Volume(v) => v.clone(),
            InstructionKind::User(s)
            | InstructionKind::Workdir(s)
            | InstructionKind::StopSignal(s) => vec![s.clone()],
            InstructionKind::Arg(defs) => defs.iter().filter_map(|d| d.default.clone()).collect(),
            _ => return,
        };
        let lexer = Lexer::new(self.df.escape);
        let mut reported = HashSet::new();
        for text in texts {
            let Ok(exp) = lexer.process(&text, &|k| known.contains(k).then(String::new)) else {
                continue;
            };
            for var in exp.unmatched {
                if !reported.insert(var.clone())
                    || var.chars().all(|c| c.is_ascii_digit())
                    || var.len() == 1 && !var.chars().all(char::is_alphabetic)
                {
                    continue;
                }
                let names: Vec<&str> = known.iter().map(String::as_str).collect();
                let suggest = did_you_mean(&var, &names);
                let mut message = format!("Usage of undefined variable '${var}'");
                if let Some(s) = suggest {
                    let _ = write!(message, " (did you mean ${s}?)");
                }
                let fix = match suggest {
                    _ if global_arg_names(self.df).contains(&var) => {
                        format!(
                            "global ARGs are not visible in a stage: add `ARG {var}` to this stage first"
                        )
                    }
                    Some(s) => {
                        format!("use `${s}`, or define it first with `ARG {var}` or `ENV {var}=…`")
                    }
                    None if !base_known => format!(
                        "define it first with `ARG {var}` or `ENV {var}=…` (unless the base image sets it)"
                    ),
                    None => format!("define it first with `ARG {var}` or `ENV {var}=…`"),
                };
                self.report(
                    "UndefinedVar",
                    message,
                    self.at(ins.meta.span, Some(&var)),
                    fix,
                );
            }
        }
    }

    fn expose(&mut self, ins: &Instruction) {
        let InstructionKind::Expose(ports) = &ins.kind else {
            return;
        };
        for port in ports {
            if port.contains(':') {
                self.report(
                    "ExposeInvalidFormat",
                    format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{port}'"),
                    self.at(ins.meta.span, Some(port)),
                    format!("write `EXPOSE {}` and publish ports when running", port.rsplit(':').next().unwrap_or(port)),
                );
            }
            if let Some((_, proto)) = port.split_once('/')
                && proto != proto.to_lowercase()
                && parse_port(&port.to_lowercase()).is_ok()
            {
                self.report(
                    "ExposeProtoCasing",
                    format!("Defined protocol '{port}' in EXPOSE instruction should be lowercase"),
                    self.at(ins.meta.span, Some(port)),
                    format!("write `{}`", port.to_lowercase()),
                );
            }
        }
    }

    fn secrets(&mut self, ins: &Instruction) {
        let names: Vec<String> = match &ins.kind {
            InstructionKind::Arg(defs) => defs.iter().map(|d| d.name.clone()).collect(),
            InstructionKind::Env(pairs) => pairs.iter().map(|p| p.key.clone()).collect(),
            _ => return,
        };
        let name = ins.kind.name();
        for key in names {
            if looks_secret(&key) {
                self.report(
                    "SecretsUsedInArgOrEnv",
                    format!(
                        "Do not use ARG or ENV instructions for sensitive data ({name} {key:?})"
                    ),
                    self.at(ins.meta.span, Some(&key)),
                    format!(
                        "pass it with `RUN --mount=type=secret,id={}` instead",
                        key.to_lowercase()
                    ),
                );
            }
        }
    }
}

fn quote_if_needed(v: &str) -> String {
    if v.contains(char::is_whitespace) && !v.starts_with('"') {
        format!("\"{v}\"")
    } else {
        v.to_string()
    }
}

/// BuildKit's secret-name heuristic: a `_`-separated word of the name is a
/// secret word, and none is `public`.
fn looks_secret(name: &str) -> bool {
    const SECRET: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    let words: Vec<String> = name.split('_').map(str::to_ascii_lowercase).collect();
    words.iter().any(|w| SECRET.contains(&w.as_str())) && !words.iter().any(|w| w == "public")
}

fn valid_base_name(name: &str) -> bool {
    if name.is_empty()
        || name.ends_with(':')
        || name.ends_with('@')
        || name.contains(char::is_whitespace)
    {
        return false;
    }
    let repo = name.split('@').next().unwrap_or(name);
    let path = match repo.rfind(':') {
        Some(i) if !repo[i..].contains('/') => &repo[..i],
        _ => repo,
    };
    !path.is_empty()
        && !path
            .split('/')
            .skip(1)
            .any(|c| c.chars().any(|ch| ch.is_ascii_uppercase()))
}

fn global_arg_names(df: &Dockerfile) -> HashSet<String> {
    let mut out = HashSet::new();
    for ins in &df.global_args {
        if let InstructionKind::Arg(defs) = &ins.kind {
            out.extend(defs.iter().map(|d| d.name.clone()));
        }
    }
    out
}

/// Run every rule; honour the file's `# check=` directive.
pub fn check(df: &Dockerfile) -> Result<Vec<Finding>, crate::Error> {
    let config = match df.tree.directive("check") {
        None => CheckConfig::default(),
        Some(v) => CheckConfig::parse(v).map_err(|m| {
            let d = df.tree.directives.iter().find(|d| d.name == "check");
            crate::Error::Instruction {
                message: m,
                location: d.map(|d| df.tree.locate(d.span)).unwrap_or_default(),
                help: Some("write `# check=skip=RULE1,RULE2;error=true`".into()),
            }
        })?,
    };
    Ok(check_with(df, &config))
}

/// Run every rule with an explicit configuration.
pub fn check_with(df: &Dockerfile, config: &CheckConfig) -> Vec<Finding> {
    let mut c = Checker {
        df,
        findings: Vec::new(),
    };
    for w in &df.tree.warnings {
        let (s, e) = df.tree.line_bounds(w.line);
        c.report(
            "NoEmptyContinuation",
            "Empty continuation line".into(),
            df.tree.locate(Span::new(s, e)),
            "remove the empty line, or end the instruction before it".into(),
        );
    }
    c.casing();
    c.stages();
    let mut findings: Vec<Finding> = c
        .findings
        .into_iter()
        .filter(|f| !config.skips(f.rule))
        .collect();
    if config.error {
        for f in &mut findings {
            f.severity = Severity::Error;
        }
    }
    findings.sort_by_key(|f| (f.location.line, f.location.column));
    findings
}
