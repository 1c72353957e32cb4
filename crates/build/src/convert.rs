//! Dockerfile IR + build arguments → an op graph and the target's image
//! config, the way BuildKit's `dockerfile2llb` does it:
//!
//! - only the stages the target needs are converted (its base stages,
//!   `COPY --from` and `RUN --mount from=` stages, recursively);
//! - ARG scoping: BuildKit's predefined platform ARGs and the global ARGs
//!   (before the first FROM) are usable in FROM lines; a stage sees a
//!   global ARG only after declaring it; `--build-arg` overrides defaults;
//!   ARG values are in the environment of later RUNs (and so in their cache
//!   keys); the proxy ARGs reach RUNs without a declaration and stay out of
//!   keys and history;
//! - variables are expanded with [`kiln_dockerfile::shell::Lexer`] in the
//!   instructions that expand them, with the stage's ENV and ARGs;
//! - the image config and history are docker's: `created_by` strings like
//!   `RUN |1 V=2 /bin/sh -c make # buildkit`, `empty_layer` for metadata;
//! - ONBUILD triggers of the base (image or stage) run first in a stage.

// Go's `map[string]struct{}` (ports, volumes) is a map to empty objects.
#![allow(clippy::zero_sized_map_values)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use kiln_dockerfile::ir::{
    self, Copy as CopyIr, Healthcheck, KeyValue, Meta, MountType, NetworkMode, Run,
};
use kiln_dockerfile::shell::Lexer;
use kiln_dockerfile::syntax::go_quote;
use kiln_dockerfile::{Base, Dockerfile, Instruction, InstructionKind, Location, ShellOrExec};
use kiln_oci::Reference;
use kiln_oci::config::{ContainerConfig, Empty, History, ImageConfig};
use kiln_solver::ops::{
    Chown, Copy, ExecOp, FileAction, FileOp, KilnOp, Mount, MountSource, Network, Sharing, SourceOp,
};
use kiln_solver::{Graph, VertexId, VertexOptions};
use kiln_store::ImageRecord;

use crate::error::{BuildError, StepLocation};

/// The `PATH` an image gets when its base does not set one (BuildKit's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// BuildKit's history comment on every entry a Dockerfile build adds.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// The proxy build arguments (either case), passed to RUN steps without
/// being declared, never part of a key or the history.
pub const PROXY_ARGS: [&str; 5] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// The name of the main build context.
pub const MAIN_CONTEXT: &str = "context";

/// A base image as the store has it.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The image.
    pub record: ImageRecord,
    /// Its config.
    pub config: ImageConfig,
}

/// Finds base images (the store until registries are supported).
pub trait ImageSource {
    /// The image named `reference` (normalized), if there is one.
    fn image(&self, reference: &str) -> Result<Option<BaseImage>, BuildError>;
}

/// What conversion needs besides the Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// `--build-arg K=V`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--label K=V`: added to the target image's labels.
    pub labels: BTreeMap<String, String>,
    /// `--no-cache-filter STAGE…`.
    pub no_cache_filter: Vec<String>,
    /// `--network`: the default network of RUN steps.
    pub network: Network,
    /// A stable identity of this Dockerfile build (for `--explain`).
    pub step_scope: String,
}

/// The converted build.
#[derive(Debug)]
pub struct Plan {
    /// The op graph.
    pub graph: Graph<KilnOp>,
    /// The target stage's final filesystem.
    pub target: VertexId,
    /// The target stage's index.
    pub target_stage: usize,
    /// The target's image config (its `rootfs` and `created` are filled in
    /// by the export).
    pub image: ImageConfig,
    /// Where each step comes from in the Dockerfile.
    pub steps: HashMap<VertexId, StepLocation>,
    /// Base images used, by normalized reference.
    pub images: HashMap<String, ImageRecord>,
    /// Things the user should know (unused build args…).
    pub warnings: Vec<String>,
}

/// Platform of this machine (the only one kiln builds for now).
pub fn host_platform() -> (String, String, String) {
    let arch = kiln_store::host_architecture().to_owned();
    ("linux".to_owned(), arch, String::new())
}

fn platform_string() -> String {
    let (os, arch, variant) = host_platform();
    if variant.is_empty() {
        format!("{os}/{arch}")
    } else {
        format!("{os}/{arch}/{variant}")
    }
}

/// BuildKit's predefined ARGs, in its order.
pub fn predefined_args() -> Vec<(String, String)> {
    let (os, arch, variant) = host_platform();
    let platform = platform_string();
    vec![
        ("TARGETPLATFORM".into(), platform.clone()),
        ("TARGETOS".into(), os.clone()),
        ("TARGETARCH".into(), arch.clone()),
        ("TARGETVARIANT".into(), variant.clone()),
        ("BUILDPLATFORM".into(), platform),
        ("BUILDOS".into(), os),
        ("BUILDARCH".into(), arch),
        ("BUILDVARIANT".into(), variant),
    ]
}

fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// One stage's state while its instructions are converted.
#[derive(Debug, Clone)]
struct State {
    fs: VertexId,
    image: ImageConfig,
    /// The environment RUN sees: image ENV plus ARG values, in order.
    env: Vec<(String, String)>,
    /// ARGs declared in the stage (and its base stages), for RUN's history.
    build_args: Vec<(String, Option<String>)>,
    workdir: String,
    user: String,
    /// CMD was set in this stage (an ENTRYPOINT then keeps it).
    cmd_set: bool,
}

impl State {
    fn env_map(&self) -> HashMap<String, String> {
        self.env.iter().cloned().collect()
    }

    fn set_env(&mut self, key: &str, value: &str) {
        if let Some(e) = self.env.iter_mut().find(|(k, _)| k == key) {
            value.clone_into(&mut e.1);
        } else {
            self.env.push((key.to_owned(), value.to_owned()));
        }
    }

    fn shell(&self) -> Vec<String> {
        match self.image.config.as_ref().and_then(|c| c.shell.clone()) {
            Some(s) if !s.is_empty() => s,
            _ => vec!["/bin/sh".into(), "-c".into()],
        }
    }

    fn config(&mut self) -> &mut ContainerConfig {
        self.image.container_mut()
    }

    fn history(&mut self, created_by: String, layer: bool) {
        self.image.history.push(History {
            created: None,
            created_by: Some(created_by),
            author: None,
            comment: Some(HISTORY_COMMENT.to_owned()),
            empty_layer: !layer,
        });
    }
}

/// A converted stage.
#[derive(Debug, Clone)]
struct Done {
    state: State,
    /// The stage's own ONBUILD instructions (run by stages built on it).
    onbuild: Vec<String>,
}

/// Step naming of one stage: `[name i/N]`.
struct Steps {
    name: String,
    index: usize,
    total: usize,
}

impl Steps {
    fn next(&mut self, text: &str, onbuild: bool) -> String {
        self.index += 1;
        let width = self.total.to_string().len();
        let mut out = String::from("[");
        if !self.name.is_empty() {
            out.push_str(&self.name);
            out.push(' ');
        }
        let _ = write!(out, "{:>width$}/{}] ", self.index, self.total);
        if onbuild {
            out.push_str("ONBUILD ");
        }
        out + text
    }
}

struct Converter<'a> {
    df: &'a Dockerfile,
    opts: &'a ConvertOptions,
    images: &'a dyn ImageSource,
    lexer: Lexer,
    graph: Graph<KilnOp>,
    globals: HashMap<String, String>,
    done: HashMap<usize, Done>,
    in_progress: HashSet<usize>,
    steps: HashMap<VertexId, StepLocation>,
    used_images: HashMap<String, ImageRecord>,
    /// Build args some ARG declared (for the unused-arg warning).
    consumed: HashSet<String>,
    proxy_env: Vec<(String, String)>,
    scratch: Option<VertexId>,
}

/// Convert `df` for `opts`, looking base images up in `images`.
pub fn convert(
    df: &Dockerfile,
    opts: &ConvertOptions,
    images: &dyn ImageSource,
) -> Result<Plan, BuildError> {
    let target = df.target(opts.target.as_deref()).ok_or_else(|| {
        let names: Vec<&str> = df.stages.iter().filter_map(|s| s.name.as_deref()).collect();
        let t = opts.target.clone().unwrap_or_default();
        let help = kiln_dockerfile::ir::did_you_mean(&t, &names)
            .map(|s| format!("did you mean `{s}`?"))
            .or_else(|| {
                (!names.is_empty()).then(|| format!("the stages are named: {}", names.join(", ")))
            });
        BuildError::Request {
            message: format!("target stage \"{t}\" could not be found"),
            help,
        }
    })?;
    let mut cx = Converter {
        df,
        opts,
        images,
        lexer: Lexer::new(df.escape),
        graph: Graph::new(),
        globals: HashMap::new(),
        done: HashMap::new(),
        in_progress: HashSet::new(),
        steps: HashMap::new(),
        used_images: HashMap::new(),
        consumed: HashSet::new(),
        proxy_env: Vec::new(),
        scratch: None,
    };
    cx.meta_args()?;
    // BuildKit's ProxyEnv: one value per proxy (the last of the sorted
    // keys wins), set in both cases.
    let mut proxies: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in &opts.build_args {
        if let Some(p) = PROXY_ARGS.iter().find(|p| p.eq_ignore_ascii_case(k)) {
            proxies.insert(p, v);
        }
    }
    for (p, v) in proxies {
        cx.proxy_env.push((p.to_owned(), v.to_owned()));
        cx.proxy_env.push((p.to_ascii_lowercase(), v.to_owned()));
    }
    cx.stage(target)?;
    let Some(done) = cx.done.remove(&target) else {
        return Err(BuildError::request(
            "internal error: the target stage was not converted",
            None,
        ));
    };
    let mut image = done.state.image;
    if !opts.labels.is_empty() {
        let labels = image
            .container_mut()
            .labels
            .get_or_insert_with(BTreeMap::new);
        for (k, v) in &opts.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    let mut warnings = Vec::new();
    let unused: Vec<&str> = opts
        .build_args
        .keys()
        .filter(|k| !cx.consumed.contains(*k) && !is_proxy_arg(k))
        // Read by the CLI when it opens a git context.
        .filter(|k| k.as_str() != "BUILDKIT_CONTEXT_KEEP_GIT_DIR")
        .filter(|k| !predefined_args().iter().any(|(p, _)| p == *k))
        .map(String::as_str)
        .collect();
    if !unused.is_empty() {
        warnings.push(format!(
            "one or more build-args [{}] were not consumed",
            unused.join(" ")
        ));
    }
    Ok(Plan {
        graph: cx.graph,
        target: done.state.fs,
        target_stage: target,
        image,
        steps: cx.steps,
        images: cx.used_images,
        warnings,
    })
}

impl Converter<'_> {
    fn at(&self, meta: &Meta, message: impl Into<String>, help: Option<&str>) -> BuildError {
        BuildError::At {
            message: message.into(),
            location: self.locate(meta),
            help: help.map(str::to_owned),
        }
    }

    fn locate(&self, meta: &Meta) -> Location {
        self.df.tree.locate(meta.span)
    }

    fn step_location(&self, meta: &Meta) -> StepLocation {
        StepLocation {
            location: self.locate(meta),
            end_line: meta.end_line,
        }
    }

    /// Global ARGs: the predefined ones, then the meta ARGs in order.
    fn meta_args(&mut self) -> Result<(), BuildError> {
        self.globals = predefined_args().into_iter().collect();
        for ins in &self.df.global_args {
            let InstructionKind::Arg(defs) = &ins.kind else {
                continue;
            };
            for d in defs {
                self.consumed.insert(d.name.clone());
                if let Some(v) = self.opts.build_args.get(&d.name) {
                    self.globals.insert(d.name.clone(), v.clone());
                } else if let Some(default) = &d.default {
                    let v = self
                        .lexer
                        .process_word(default, &self.globals)
                        .map_err(|e| self.at(&ins.meta, e.to_string(), None))?;
                    self.globals.insert(d.name.clone(), v);
                }
            }
        }
        Ok(())
    }

    fn vertex(
        &mut self,
        op: KilnOp,
        inputs: &[VertexId],
        name: String,
        step_id: Option<String>,
        no_cache: bool,
        meta: Option<&Meta>,
    ) -> VertexId {
        let mut options = VertexOptions::named(name).no_cache(no_cache);
        options.step_id = step_id;
        let v = self.graph.add(op, inputs, options);
        if let Some(meta) = meta {
            let loc = self.step_location(meta);
            self.steps.insert(v, loc);
        }
        v
    }

    fn scratch(&mut self) -> VertexId {
        if let Some(v) = self.scratch {
            return v;
        }
        let v = self.vertex(
            KilnOp::Source(SourceOp::Scratch),
            &[],
            String::new(),
            None,
            false,
            None,
        );
        self.scratch = Some(v);
        v
    }

    fn stage_name(&self, index: usize) -> String {
        if self.df.stages.len() == 1 {
            return String::new();
        }
        self.df.stages[index]
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{index}"))
    }

    /// Look a base image up; an error at `meta` when it is missing.
    fn base_image(&mut self, name: &str, meta: &Meta) -> Result<(String, BaseImage), BuildError> {
        let reference = Reference::parse(name)
            .map_err(|e| self.at(meta, format!("invalid image reference `{name}`: {e}"), None))?;
        let normalized = reference.to_string();
        let found = self.images.image(&normalized).map_err(|e| match e {
            // A failed pull: said at the FROM line.
            BuildError::Request { message, help } => self.at(
                meta,
                format!("base image `{name}` ({normalized}): {message}"),
                help.as_deref(),
            ),
            e => e,
        })?;
        let Some(found) = found else {
            return Err(self.at(
                meta,
                format!("base image `{name}` ({normalized}) is not in the store"),
                Some(
                    "pull it with `kiln pull NAME`, or make it locally with `kiln import ROOTFS.tar NAME`, `kiln load`, or a build tagged with that name",
                ),
            ));
        };
        self.used_images
            .insert(normalized.clone(), found.record.clone());
        Ok((normalized, found))
    }

    /// Convert stage `index` (and what it needs), once.
    fn stage(&mut self, index: usize) -> Result<(), BuildError> {
        if self.done.contains_key(&index) {
            return Ok(());
        }
        let stage = &self.df.stages[index];
        if !self.in_progress.insert(index) {
            return Err(self.at(&stage.from, "circular dependency between stages", None));
        }
        let no_cache = stage.name.as_ref().is_some_and(|n| {
            self.opts
                .no_cache_filter
                .iter()
                .any(|f| f.eq_ignore_ascii_case(n))
        });

        if let Some(platform) = &stage.platform {
            let p = self
                .lexer
                .process_word(platform, &self.globals)
                .map_err(|e| self.at(&stage.from, e.to_string(), None))?;
            let want = platform_string();
            let p_norm = p.trim_end_matches('/').to_ascii_lowercase();
            if p_norm != want && !(want.ends_with("amd64") && p_norm == format!("{want}/v1")) {
                return Err(self.at(
                    &stage.from,
                    format!(
                        "FROM --platform={p}: only the host platform ({want}) can be built for now"
                    ),
                    Some("leave --platform out, or use $BUILDPLATFORM"),
                ));
            }
        }

        let base = self.df.resolve_base(index, &self.globals)?;
        let mut triggers: Vec<String> = Vec::new();
        let mut steps = Steps {
            name: self.stage_name(index),
            index: 0,
            total: 0,
        };
        let own_steps = stage
            .instructions
            .iter()
            .filter(|i| {
                matches!(
                    i.kind,
                    InstructionKind::Run(_)
                        | InstructionKind::Copy(_)
                        | InstructionKind::Add(_)
                        | InstructionKind::Workdir(_)
                )
            })
            .count();
        let from_meta = stage.from.clone();
        let step_scope = format!("{}#{}", self.opts.step_scope, index);

        let mut state = match base {
            Base::Scratch => {
                let fs = self.scratch();
                let (os, arch, variant) = host_platform();
                let mut image = ImageConfig {
                    architecture: arch,
                    os,
                    variant: (!variant.is_empty()).then_some(variant),
                    ..ImageConfig::default()
                };
                let c = image.container_mut();
                c.working_dir = Some("/".into());
                c.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
                steps.total = own_steps;
                State {
                    fs,
                    env: vec![("PATH".into(), DEFAULT_PATH.into())],
                    image,
                    build_args: Vec::new(),
                    workdir: "/".into(),
                    user: String::new(),
                    cmd_set: false,
                }
            }
            Base::Stage(parent) => {
                self.stage(parent)?;
                let Some(done) = self.done.get(&parent) else {
                    return Err(self.at(&from_meta, "internal error: base stage missing", None));
                };
                triggers.clone_from(&done.onbuild);
                let mut state = done.state.clone();
                state.cmd_set = false;
                if let Some(c) = state.image.config.as_mut() {
                    c.on_build = None;
                }
                steps.total = own_steps + triggers.len();
                state
            }
            Base::Image(name) => {
                let (normalized, base) = self.base_image(&name, &from_meta)?;
                let mut image = base.config.clone();
                image.created = None;
                if let Some(c) = image.config.as_mut() {
                    triggers = c.on_build.take().unwrap_or_default();
                }
                steps.total = 1 + own_steps + triggers.len();
                let label = steps.next(&format!("FROM {normalized}"), false);
                let fs = self.vertex(
                    KilnOp::Source(SourceOp::Image {
                        reference: normalized,
                        platform: platform_string(),
                    }),
                    &[],
                    label,
                    Some(format!("{step_scope}/from")),
                    no_cache,
                    Some(&from_meta),
                );
                let env: Vec<(String, String)> = image
                    .config
                    .as_ref()
                    .and_then(|c| c.env.clone())
                    .unwrap_or_default()
                    .iter()
                    .map(|e| split_env(e))
                    .collect();
                let workdir = image
                    .config
                    .as_ref()
                    .and_then(|c| c.working_dir.clone())
                    .filter(|w| !w.is_empty())
                    .unwrap_or_else(|| "/".into());
                let user = image
                    .config
                    .as_ref()
                    .and_then(|c| c.user.clone())
                    .unwrap_or_default();
                State {
                    fs,
                    image,
                    env,
                    build_args: Vec::new(),
                    workdir,
                    user,
                    cmd_set: false,
                }
            }
        };
        // Make sure PATH is always set (BuildKit does).
        if !state.env.iter().any(|(k, _)| k == "PATH") {
            state.set_env("PATH", DEFAULT_PATH);
            let env = state.config().env.get_or_insert_with(Vec::new);
            env.push(format!("PATH={DEFAULT_PATH}"));
        }

        let mut onbuild = Vec::new();
        for (n, trigger) in triggers.iter().enumerate() {
            let ins = self.parse_trigger(trigger, &from_meta)?;
            let id = format!("{step_scope}/onbuild{n}");
            self.instruction(
                index,
                &mut state,
                &mut steps,
                &ins,
                true,
                &id,
                no_cache,
                &mut onbuild,
            )?;
        }
        let instructions = self.df.stages[index].instructions.clone();
        for (n, ins) in instructions.iter().enumerate() {
            let id = format!("{step_scope}/{n}");
            self.instruction(
                index,
                &mut state,
                &mut steps,
                ins,
                false,
                &id,
                no_cache,
                &mut onbuild,
            )?;
        }
        self.in_progress.remove(&index);
        self.done.insert(index, Done { state, onbuild });
        Ok(())
    }

    /// An ONBUILD trigger's text as an instruction located at the FROM line.
    fn parse_trigger(&self, text: &str, from: &Meta) -> Result<Instruction, BuildError> {
        let source = format!("FROM scratch\n{text}\n");
        let df = Dockerfile::parse(source.as_bytes()).map_err(|e| {
            self.at(
                from,
                format!(
                    "ONBUILD trigger `{text}` of the base image: {}",
                    e.message()
                ),
                None,
            )
        })?;
        let mut ins = df
            .stages
            .into_iter()
            .next()
            .and_then(|s| s.instructions.into_iter().next())
            .ok_or_else(|| self.at(from, format!("ONBUILD trigger `{text}` is empty"), None))?;
        ins.meta.span = from.span;
        ins.meta.start_line = from.start_line;
        ins.meta.end_line = from.end_line;
        Ok(ins)
    }

    fn expand(
        &self,
        meta: &Meta,
        word: &str,
        env: &HashMap<String, String>,
    ) -> Result<String, BuildError> {
        self.lexer
            .process_word(word, env)
            .map_err(|e| self.at(meta, e.to_string(), None))
    }

    /// The display text of an instruction: its original line with variables
    /// expanded where they are known, keyword upper-cased.
    fn display(&self, meta: &Meta, env: &HashMap<String, String>) -> String {
        let text = self
            .lexer
            .raw_quotes(true)
            .skip_unset_env(true)
            .process_word(&meta.original, env)
            .unwrap_or_else(|_| meta.original.clone());
        match text.split_once(' ') {
            Some((kw, rest)) => format!("{} {rest}", kw.to_ascii_uppercase()),
            None => text.to_ascii_uppercase(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn instruction(
        &mut self,
        stage: usize,
        state: &mut State,
        steps: &mut Steps,
        ins: &Instruction,
        is_onbuild: bool,
        step_id: &str,
        no_cache: bool,
        onbuild: &mut Vec<String>,
    ) -> Result<(), BuildError> {
        let meta = &ins.meta;
        let env = state.env_map();
        match &ins.kind {
            InstructionKind::Run(run) => {
                let name = steps.next(&self.display(meta, &env), is_onbuild);
                self.run(stage, state, run, meta, name, step_id, no_cache)?;
            }
            InstructionKind::Copy(c) | InstructionKind::Add(c) => {
                let is_add = matches!(ins.kind, InstructionKind::Add(_));
                let name = steps.next(&self.display(meta, &env), is_onbuild);
                self.copy(stage, state, c, is_add, meta, name, step_id, no_cache)?;
            }
            InstructionKind::Workdir(path) => {
                let path = self.expand(meta, path, &env)?;
                let wd = normalize_workdir(&state.workdir, &path);
                state.workdir.clone_from(&wd);
                state.config().working_dir = Some(wd.clone());
                let name = steps.next(&self.display(meta, &env), is_onbuild);
                let layer = wd != "/";
                if layer {
                    let chown = (!state.user.is_empty()).then(|| chown_of(&state.user));
                    let op = FileOp {
                        actions: vec![FileAction::Mkdir {
                            path: wd.clone(),
                            mode: 0o755,
                            parents: true,
                            chown,
                        }],
                        link: false,
                    };
                    state.fs = self.vertex(
                        KilnOp::File(op),
                        &[state.fs],
                        name,
                        Some(step_id.to_owned()),
                        no_cache,
                        Some(meta),
                    );
                }
                state.history(format!("WORKDIR {wd}"), layer);
            }
            InstructionKind::Env(pairs) => {
                let mut msg = String::from("ENV");
                for (k, v) in self.key_values(meta, pairs, &env)? {
                    let _ = write!(msg, " {k}={v}");
                    state.set_env(&k, &v);
                    let list = state.config().env.get_or_insert_with(Vec::new);
                    match list.iter_mut().find(|e| split_env(e).0 == k) {
                        Some(e) => *e = format!("{k}={v}"),
                        None => list.push(format!("{k}={v}")),
                    }
                }
                state.history(msg, false);
            }
            InstructionKind::Label(pairs) => {
                let mut msg = String::from("LABEL");
                for (k, v) in self.key_values(meta, pairs, &env)? {
                    let _ = write!(msg, " {k}={v}");
                    state
                        .config()
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(k, v);
                }
                state.history(msg, false);
            }
            InstructionKind::Arg(defs) => {
                let mut parts = Vec::new();
                for d in defs {
                    self.consumed.insert(d.name.clone());
                    let mut value = None;
                    if let Some(v) = self.opts.build_args.get(&d.name) {
                        value = Some(v.clone());
                    } else if let Some(default) = &d.default {
                        value = Some(self.expand(meta, default, &state.env_map())?);
                    } else if let Some(v) = self.globals.get(&d.name) {
                        value = Some(v.clone());
                    }
                    if let Some(v) = &value {
                        state.set_env(&d.name, v);
                        parts.push(format!("{}={v}", d.name));
                    } else {
                        parts.push(d.name.clone());
                    }
                    state.build_args.push((d.name.clone(), value));
                }
                state.history(format!("ARG {}", parts.join(" ")), false);
            }
            InstructionKind::Cmd(cmd) => {
                let args = with_shell(state, cmd);
                state.history(format!("CMD {}", go_list_q(&args)), false);
                let c = state.config();
                c.cmd = Some(args);
                c.args_escaped = Some(true);
                state.cmd_set = true;
            }
            InstructionKind::Entrypoint(cmd) => {
                let args = with_shell(state, cmd);
                state.history(format!("ENTRYPOINT {}", go_list_q(&args)), false);
                let cmd_set = state.cmd_set;
                let c = state.config();
                c.entrypoint = Some(args);
                if !cmd_set {
                    c.cmd = None;
                }
            }
            InstructionKind::Shell(shell) => {
                state.history(format!("SHELL {}", go_list_v(shell)), false);
                state.config().shell = Some(shell.clone());
            }
            InstructionKind::User(user) => {
                let user = self.expand(meta, user, &env)?;
                state.user.clone_from(&user);
                state.config().user = Some(user.clone());
                state.history(format!("USER {user}"), false);
            }
            InstructionKind::Expose(ports) => {
                let mut specs = Vec::new();
                for p in ports {
                    let words = self
                        .lexer
                        .process_words(p, &env)
                        .map_err(|e| self.at(meta, e.to_string(), None))?;
                    for w in words {
                        specs.extend(parse_port_spec(&w).map_err(|m| self.at(meta, m, None))?);
                    }
                }
                let exposed = state
                    .config()
                    .exposed_ports
                    .get_or_insert_with(BTreeMap::new);
                for s in &specs {
                    exposed.insert(s.clone(), Empty {});
                }
                state.history(format!("EXPOSE {}", go_list_v(&specs)), false);
            }
            InstructionKind::Volume(vols) => {
                let mut list = Vec::new();
                for v in vols {
                    let v = self.expand(meta, v, &env)?;
                    if v.is_empty() {
                        return Err(self.at(
                            meta,
                            "VOLUME specified can not be an empty string",
                            None,
                        ));
                    }
                    list.push(v);
                }
                let volumes = state.config().volumes.get_or_insert_with(BTreeMap::new);
                for v in &list {
                    volumes.insert(v.clone(), Empty {});
                }
                state.history(format!("VOLUME {}", go_list_v(&list)), false);
            }
            InstructionKind::StopSignal(sig) => {
                let sig = self.expand(meta, sig, &env)?;
                if !valid_signal(&sig) {
                    return Err(self.at(
                        meta,
                        format!("invalid signal: {sig}"),
                        Some("use a name like SIGTERM, TERM or SIGRTMIN+3, or a number"),
                    ));
                }
                state.config().stop_signal = Some(sig.clone());
                state.history(format!("STOPSIGNAL {sig}"), false);
            }
            InstructionKind::Healthcheck(hc) => {
                let (json, text) = healthcheck(hc);
                state.config().healthcheck = Some(json);
                state.history(format!("HEALTHCHECK {text}"), false);
            }
            InstructionKind::Maintainer(name) => {
                state.image.author = Some(name.clone());
                state.history(format!("MAINTAINER {name}"), false);
            }
            InstructionKind::Onbuild { expression, .. } => {
                onbuild.push(expression.clone());
                state
                    .config()
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(expression.clone());
            }
        }
        Ok(())
    }

    fn key_values(
        &self,
        meta: &Meta,
        pairs: &[KeyValue],
        env: &HashMap<String, String>,
    ) -> Result<Vec<(String, String)>, BuildError> {
        pairs
            .iter()
            .map(|p| {
                Ok((
                    self.expand(meta, &p.key, env)?,
                    self.expand(meta, &p.value, env)?,
                ))
            })
            .collect()
    }

    /// The input vertex a `from` (stage name, index or image) refers to.
    fn source_of(
        &mut self,
        stage: usize,
        from: &str,
        resolved: Option<usize>,
        meta: &Meta,
        no_cache: bool,
    ) -> Result<VertexId, BuildError> {
        if from.contains('$') {
            return Err(self.at(
                meta,
                "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
                None,
            ));
        }
        let resolved = resolved.or_else(|| self.df.stage_ref(from, stage));
        if let Some(s) = resolved {
            self.stage(s)?;
            return Ok(self.done[&s].state.fs);
        }
        if self
            .df
            .stages
            .iter()
            .any(|s| s.name.as_deref() == Some(from.to_lowercase().as_str()))
        {
            return Err(self.at(
                meta,
                format!("cannot copy from stage \"{from}\", it needs to be defined before the current stage"),
                None,
            ));
        }
        if from.parse::<usize>().is_ok() {
            return Err(self.at(meta, format!("invalid stage index {from}"), None));
        }
        let (normalized, _) = self.base_image(from, meta)?;
        let name = format!("[internal] load {normalized}");
        Ok(self.vertex(
            KilnOp::Source(SourceOp::Image {
                reference: normalized,
                platform: platform_string(),
            }),
            &[],
            name,
            None,
            no_cache,
            Some(meta),
        ))
    }

    fn context_source(
        &mut self,
        include: Vec<String>,
        exclude: Vec<String>,
        step_id: String,
        meta: &Meta,
    ) -> VertexId {
        self.vertex(
            KilnOp::Source(SourceOp::Context {
                name: MAIN_CONTEXT.into(),
                include,
                exclude,
            }),
            &[],
            "[internal] load build context".into(),
            Some(step_id),
            false,
            Some(meta),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn copy(
        &mut self,
        stage: usize,
        state: &mut State,
        c: &CopyIr,
        is_add: bool,
        meta: &Meta,
        name: String,
        step_id: &str,
        no_cache: bool,
    ) -> Result<(), BuildError> {
        let env = state.env_map();
        let keyword = if is_add { "ADD" } else { "COPY" };
        let chown = c
            .chown
            .as_deref()
            .map(|v| self.expand(meta, v, &env))
            .transpose()?;
        let chmod = c
            .chmod
            .as_deref()
            .map(|v| self.expand(meta, v, &env))
            .transpose()?;
        if let Some(m) = &chmod
            && kiln_solver::ops::Chmod::parse(m).is_err()
        {
            return Err(self.at(
                meta,
                format!("invalid chmod parameter: '{m}'. it should be octal string and between 0 and 07777, or a symbolic mode"),
                None,
            ));
        }
        let checksum = c
            .checksum
            .as_deref()
            .map(|v| self.expand(meta, v, &env))
            .transpose()?;
        let mut git_checksum = None;
        if let Some(sum) = &checksum {
            let is_url = |s: &String| s.starts_with("http://") || s.starts_with("https://");
            let first = match c.sources.as_slice() {
                [one] => Some(self.expand(meta, one, &env)?),
                _ => None,
            };
            if first.as_ref().is_some_and(|s| is_git_source(s)) {
                // BuildKit: for a git source the checksum is the commit
                // (or a prefix of it) the ref must resolve to.
                if sum.len() < 7 || sum.len() > 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(self.at(
                        meta,
                        format!(
                            "invalid --checksum `{sum}` for a git source: expected a commit id"
                        ),
                        None,
                    ));
                }
                git_checksum = Some(sum.to_ascii_lowercase());
            } else if !first.as_ref().is_some_and(is_url) {
                return Err(self.at(
                    meta,
                    "ADD --checksum needs exactly one source, an http(s) URL or a git repository",
                    None,
                ));
            }
            let hex = sum.strip_prefix("sha256:").unwrap_or("");
            if git_checksum.is_none()
                && (hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(self.at(
                    meta,
                    format!("invalid --checksum `{sum}`: expected sha256:<64 hex digits>"),
                    None,
                ));
            }
        }
        let dest_raw = self.expand(meta, &c.dest, &env)?;
        let dest = dest_path(&state.workdir, &dest_raw);

        let heredoc_names: HashSet<&str> = c.heredocs.iter().map(|h| h.name.as_str()).collect();
        let mut sources = Vec::new();
        let mut urls = Vec::new();
        let mut gits = Vec::new();
        let mut heredocs = Vec::new();
        for s in &c.sources {
            if let Some(name) = s
                .strip_prefix("<<")
                .map(|n| n.trim_start_matches('-').trim_matches(['"', '\'']))
                && heredoc_names.contains(name)
            {
                heredocs.push(name.to_owned());
                continue;
            }
            let s = self.expand(meta, s, &env)?;
            let git = is_git_source(&s);
            if s.starts_with("http://") || s.starts_with("https://") || git {
                if !is_add {
                    let what = if git { "a git ref" } else { "a URL" };
                    return Err(self.at(
                        meta,
                        format!("source can't be {what} for COPY"),
                        Some("use ADD for URLs and git repositories"),
                    ));
                }
                if git {
                    gits.push(s);
                } else {
                    urls.push(s);
                }
                continue;
            }
            sources.push(s);
        }

        if c.keep_git_dir && gits.is_empty() {
            return Err(self.at(meta, "ADD --keep-git-dir applies to git sources only", None));
        }
        let chown_op = chown.as_deref().map(chown_of);
        let unpack = if is_add {
            c.unpack.unwrap_or(true)
        } else {
            false
        };
        if !is_add && c.unpack.is_some() {
            return Err(self.at(meta, "--unpack applies to ADD only", None));
        }
        let mut inputs = vec![state.fs];
        let mut actions = Vec::new();
        if !sources.is_empty() {
            let from = match &c.from {
                Some(f) => self.source_of(stage, f, c.from_stage, meta, no_cache)?,
                None => self.context_source(
                    sources.clone(),
                    c.exclude.clone(),
                    format!("{step_id}/context"),
                    meta,
                ),
            };
            inputs.push(from);
            actions.push(FileAction::Copy(Copy {
                from: inputs.len() - 1,
                sources: sources.clone(),
                dest: dest.clone(),
                chown: chown_op.clone(),
                chmod: chmod.clone(),
                follow_symlinks: true,
                dir_contents_only: true,
                allow_wildcard: true,
                allow_empty_wildcard: true,
                create_dest_path: true,
                unpack_archives: unpack,
                parents: c.parents,
                exclude: c.exclude.clone(),
            }));
        }
        for url in &urls {
            // The file's name: the URL path's last part (BuildKit's rule).
            let path = url
                .split_once("://")
                .map_or("", |(_, rest)| rest)
                .split(['?', '#'])
                .next()
                .unwrap_or("");
            let base = path.split_once('/').map_or("", |(_, p)| p);
            let name = base
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty() && *n != ".");
            let filename = name.unwrap_or("__unnamed__").to_owned();
            let v = self.vertex(
                KilnOp::Source(SourceOp::Http {
                    url: url.clone(),
                    checksum: checksum.clone(),
                    filename: Some(filename.clone()),
                }),
                &[],
                format!("[internal] download {url}"),
                Some(format!("{step_id}/url{}", inputs.len())),
                no_cache,
                Some(meta),
            );
            inputs.push(v);
            actions.push(FileAction::Copy(Copy {
                from: inputs.len() - 1,
                sources: vec![filename],
                dest: dest.clone(),
                chown: chown_op.clone(),
                chmod: chmod.clone(),
                create_dest_path: true,
                // Remote files are not extracted unless --unpack says so.
                unpack_archives: c.unpack == Some(true),
                ..Copy::default()
            }));
        }
        for url in &gits {
            // BuildKit: the repository's tree (or `#REF:SUBDIR`) copied into
            // the destination, like `COPY --from=tree / DEST`.
            let src = kiln_context::GitSource::parse(url);
            let v = self.vertex(
                KilnOp::Source(SourceOp::Git {
                    url: src.url.clone(),
                    reference: src.reference.clone(),
                    subdir: src.subdir.clone(),
                    keep_git_dir: c.keep_git_dir,
                    checksum: git_checksum.clone(),
                }),
                &[],
                format!("[internal] git {url}"),
                Some(format!("{step_id}/git{}", inputs.len())),
                no_cache,
                Some(meta),
            );
            inputs.push(v);
            actions.push(FileAction::Copy(Copy {
                from: inputs.len() - 1,
                sources: vec!["/".to_owned()],
                dest: dest.clone(),
                chown: chown_op.clone(),
                chmod: chmod.clone(),
                dir_contents_only: true,
                create_dest_path: true,
                ..Copy::default()
            }));
        }
        for name in &heredocs {
            let Some(doc) = c.heredocs.iter().find(|h| &h.name == name) else {
                continue;
            };
            let mut data = doc.body();
            if doc.expand {
                data = Lexer::new('\\')
                    .skip_process_quotes(true)
                    .process_word(&data, &env)
                    .map_err(|e| self.at(meta, e.to_string(), None))?;
            }
            let file = FileOp {
                actions: vec![FileAction::Mkfile {
                    path: format!("/{name}"),
                    mode: 0o644,
                    data: data.into_bytes(),
                    chown: None,
                }],
                link: false,
            };
            let v = self.vertex(KilnOp::File(file), &[], String::new(), None, no_cache, None);
            inputs.push(v);
            actions.push(FileAction::Copy(Copy {
                from: inputs.len() - 1,
                sources: vec![name.clone()],
                dest: dest.clone(),
                chown: chown_op.clone(),
                chmod: chmod.clone(),
                create_dest_path: true,
                ..Copy::default()
            }));
        }
        let op = FileOp {
            actions,
            link: c.link,
        };
        state.fs = self.vertex(
            KilnOp::File(op),
            &inputs,
            name,
            Some(step_id.to_owned()),
            no_cache,
            Some(meta),
        );
        let mut msg = String::from(keyword);
        if c.parents {
            msg.push_str(" --parents");
        }
        if let Some(v) = &chown {
            let _ = write!(msg, " --chown={v}");
        }
        if let Some(v) = &chmod {
            let _ = write!(msg, " --chmod={v}");
        }
        for s in sources.iter().chain(urls.iter()) {
            let _ = write!(msg, " {s}");
        }
        for h in &heredocs {
            let _ = write!(msg, " <<{h}");
        }
        let _ = write!(msg, " {dest_raw} # buildkit");
        state.history(msg, true);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        stage: usize,
        state: &mut State,
        run: &Run,
        meta: &Meta,
        name: String,
        step_id: &str,
        no_cache: bool,
    ) -> Result<(), BuildError> {
        if run.security == Some(ir::SecurityMode::Insecure) {
            return Err(self.at(
                meta,
                "RUN --security=insecure is not supported",
                Some("kiln runs every step in the default sandbox"),
            ));
        }
        let env = state.env_map();
        let mut inputs = vec![state.fs];
        let mut mounts = Vec::new();

        // The command, with heredocs (BuildKit's rules).
        let mut args: Vec<String> = match &run.command {
            ShellOrExec::Exec(v) => v.clone(),
            ShellOrExec::Shell(s) => vec![s.clone()],
        };
        let mut name = name;
        if !run.heredocs.is_empty() {
            let ShellOrExec::Shell(line) = &run.command else {
                return Err(self.at(meta, "a heredoc needs the shell form of RUN", None));
            };
            let single = single_heredoc(line);
            let first = &run.heredocs[0];
            if single.is_some_and(|n| n == first.name) && run.heredocs.len() == 1 {
                let data = first.body();
                if data.starts_with("#!") {
                    // A script with a shebang: a file, mounted and run.
                    let file = FileOp {
                        actions: vec![FileAction::Mkfile {
                            path: format!("/{}", first.name),
                            mode: 0o755,
                            data: data.clone().into_bytes(),
                            chown: None,
                        }],
                        link: false,
                    };
                    let v =
                        self.vertex(KilnOp::File(file), &[], String::new(), None, no_cache, None);
                    inputs.push(v);
                    mounts.push(Mount {
                        target: "/dev/pipes/".into(),
                        source: MountSource::Input {
                            input: inputs.len() - 1,
                            selector: "/".into(),
                        },
                        readonly: true,
                    });
                    args = vec![format!("/dev/pipes/{}", first.name)];
                } else {
                    args = vec![data.clone()];
                }
                let _ = write!(name, " ({})", summarize_heredoc(&first.content));
            } else {
                let mut b = line.clone();
                for doc in &run.heredocs {
                    b.push('\n');
                    b.push_str(&doc.content);
                    b.push_str(&doc.name);
                }
                args = vec![b];
            }
        }
        if !run.command.is_exec() {
            let mut shell = state.shell();
            shell.push(args.join(" "));
            args = shell;
        }

        for m in &run.mounts {
            let mount = self.mount(
                stage,
                state,
                m,
                meta,
                step_id,
                &mut inputs,
                mounts.len(),
                no_cache,
            )?;
            mounts.push(mount);
        }

        let network = match run.network {
            None => self.opts.network,
            Some(NetworkMode::Default) => Network::Default,
            Some(NetworkMode::None) => Network::None,
            Some(NetworkMode::Host) => Network::Host,
        };
        let op = ExecOp {
            args: args.clone(),
            env: state.env.clone(),
            proxy_env: self.proxy_env.clone(),
            cwd: state.workdir.clone(),
            user: state.user.clone(),
            network,
            mounts,
        };
        state.fs = self.vertex(
            KilnOp::Exec(op),
            &inputs,
            name,
            Some(step_id.to_owned()),
            no_cache,
            Some(meta),
        );
        // `RUN |2 A=1 B=2 /bin/sh -c …`: the stage's ARGs and their values.
        let mut shown: Vec<(String, String)> = Vec::new();
        for (k, v) in &state.build_args {
            let value = env
                .get(k)
                .cloned()
                .or_else(|| v.clone())
                .unwrap_or_default();
            match shown.iter_mut().find(|(sk, _)| sk == k) {
                Some(e) => e.1 = value,
                None => shown.push((k.clone(), value)),
            }
        }
        let mut msg = String::from("RUN ");
        if !shown.is_empty() {
            let _ = write!(msg, "|{} ", shown.len());
            for (k, v) in &shown {
                let _ = write!(msg, "{k}={v} ");
            }
        }
        msg.push_str(&args.join(" "));
        msg.push_str(" # buildkit");
        state.history(msg, true);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn mount(
        &mut self,
        stage: usize,
        state: &State,
        m: &ir::Mount,
        meta: &Meta,
        step_id: &str,
        inputs: &mut Vec<VertexId>,
        index: usize,
        no_cache: bool,
    ) -> Result<Mount, BuildError> {
        let env = state.env_map();
        let ex = |v: &Option<String>| -> Result<Option<String>, BuildError> {
            v.as_deref().map(|s| self.expand(meta, s, &env)).transpose()
        };
        let target = ex(&m.target)?;
        let source = ex(&m.source)?;
        let from = m.from.clone();
        let id = ex(&m.id)?;
        let abs_target = |t: &str| -> String {
            if t.starts_with('/') {
                clean_abs(t)
            } else {
                clean_abs(&format!("{}/{t}", state.workdir))
            }
        };
        let mount = match m.kind {
            MountType::Ssh => {
                return Err(self.at(
                    meta,
                    "RUN --mount=type=ssh is not supported yet",
                    Some("use a secret mount, or fetch the sources in the build context"),
                ));
            }
            MountType::Tmpfs => {
                let target = abs_target(target.as_deref().unwrap_or_default());
                Mount {
                    target,
                    source: MountSource::Tmpfs { size: m.size },
                    readonly: false,
                }
            }
            MountType::Secret => {
                let id = id.unwrap_or_default();
                let target = target.map(|t| abs_target(&t)).unwrap_or_default();
                Mount {
                    target,
                    source: MountSource::Secret {
                        id,
                        env: m.env.clone(),
                        required: m.required,
                        mode: m.mode.unwrap_or(0o400),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    },
                    readonly: true,
                }
            }
            MountType::Cache => {
                let target = abs_target(target.as_deref().unwrap_or_default());
                let seed = match &from {
                    Some(f) => {
                        let v = self.source_of(stage, f, None, meta, no_cache)?;
                        inputs.push(v);
                        Some((
                            inputs.len() - 1,
                            source.clone().unwrap_or_else(|| "/".into()),
                        ))
                    }
                    None => None,
                };
                Mount {
                    target: target.clone(),
                    source: MountSource::Cache {
                        id: id.unwrap_or(target),
                        sharing: match m.sharing {
                            Some(ir::CacheSharing::Private) => Sharing::Private,
                            Some(ir::CacheSharing::Locked) => Sharing::Locked,
                            _ => Sharing::Shared,
                        },
                        from: seed,
                        mode: m.mode.unwrap_or(0o755),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    },
                    readonly: m.readonly,
                }
            }
            MountType::Bind => {
                let target = abs_target(target.as_deref().unwrap_or_default());
                let selector = source.unwrap_or_else(|| "/".into());
                let v = if let Some(f) = &from {
                    self.source_of(stage, f, None, meta, no_cache)?
                } else {
                    let sel = selector.trim_start_matches('/');
                    let include = vec![if sel.is_empty() {
                        ".".into()
                    } else {
                        sel.to_owned()
                    }];
                    self.context_source(
                        include,
                        Vec::new(),
                        format!("{step_id}/mount{index}"),
                        meta,
                    )
                };
                inputs.push(v);
                // Bind mounts are read-only unless `rw` is given (BuildKit).
                let rw = m.raw.split(',').any(|f| {
                    let k = f
                        .split('=')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase();
                    (k == "rw" || k == "readwrite") && !m.readonly
                });
                Mount {
                    target,
                    source: MountSource::Input {
                        input: inputs.len() - 1,
                        selector,
                    },
                    readonly: !rw,
                }
            }
        };
        if mount.target == "/" {
            return Err(self.at(
                meta,
                format!("invalid mount target \"{}\"", mount.target),
                None,
            ));
        }
        Ok(mount)
    }
}

fn split_env(e: &str) -> (String, String) {
    match e.split_once('=') {
        Some((k, v)) => (k.to_owned(), v.to_owned()),
        None => (e.to_owned(), String::new()),
    }
}

fn chown_of(text: &str) -> Chown {
    match text.split_once(':') {
        Some((u, g)) => Chown {
            user: u.to_owned(),
            group: Some(g.to_owned()),
        },
        None => Chown {
            user: text.to_owned(),
            group: None,
        },
    }
}

/// `RUN <<EOF` alone (BuildKit's `MustParseHeredoc` of the whole command).
fn single_heredoc(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name = rest.trim_matches(['"', '\'']);
    (!name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')).then_some(name)
}

fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim();
    let mut lines = doc.split('\n');
    let first = lines.next().unwrap_or("").trim_end_matches('\r').to_owned();
    if lines.next().is_some() {
        first + "..."
    } else {
        first
    }
}

fn with_shell(state: &State, cmd: &ShellOrExec) -> Vec<String> {
    match cmd {
        ShellOrExec::Exec(v) => v.clone(),
        ShellOrExec::Shell(s) => {
            let mut shell = state.shell();
            shell.push(s.clone());
            shell
        }
    }
}

/// Go's `fmt.Sprintf("%q", []string{…})`: `["a" "b"]`.
fn go_list_q(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `fmt.Sprintf("%v", []string{…})`: `[a b]`.
fn go_list_v(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Lexically clean an absolute path (`..` stops at `/`).
pub fn clean_abs(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// WORKDIR: relative paths are relative to the previous WORKDIR.
pub fn normalize_workdir(current: &str, path: &str) -> String {
    if path.starts_with('/') {
        clean_abs(path)
    } else {
        clean_abs(&format!("{current}/{path}"))
    }
}

/// BuildKit's git sources for ADD (`ParseGitRef`): `git@host:…`,
/// `git://…`, `ssh://…`, and http(s) URLs whose path ends in `.git`.
/// (`github.com/o/r` without a scheme is a local path there.)
fn is_git_source(s: &str) -> bool {
    if s.starts_with("http://") || s.starts_with("https://") {
        let path = s.split(['#', '?']).next().unwrap_or(s);
        return path.to_ascii_lowercase().ends_with(".git");
    }
    ["git@", "git://", "ssh://"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// A COPY destination relative to WORKDIR; a trailing `/` (or `.`) is kept,
/// as it means "into this directory".
pub fn dest_path(workdir: &str, dest: &str) -> String {
    let dest = if dest.is_empty() || dest == "." {
        "./"
    } else {
        dest
    };
    let joined = if dest.starts_with('/') {
        dest.to_owned()
    } else {
        format!("{workdir}/{dest}")
    };
    let mut out = clean_abs(&joined);
    if (dest.ends_with('/') || dest.ends_with("/.")) && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// EXPOSE's `[ip:][host:]port[-end][/proto]` → `port/proto` for each port.
fn parse_port_spec(raw: &str) -> Result<Vec<String>, String> {
    let container = raw.rsplit(':').next().unwrap_or(raw);
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() {
        return Err(format!("no port specified: {raw}<empty>"));
    }
    let proto = match proto.to_ascii_lowercase().as_str() {
        "" => "tcp".to_owned(),
        p @ ("tcp" | "udp" | "sctp") => p.to_owned(),
        p => return Err(format!("invalid proto: {p}")),
    };
    let bad = || format!("invalid containerPort: {port}");
    let (start, end) = if let Some((a, b)) = port.split_once('-') {
        (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        )
    } else {
        let p = port.parse::<u16>().map_err(|_| bad())?;
        (p, p)
    };
    if end < start {
        return Err(format!("invalid range specified for port: {port}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Docker's `signal.ParseSignal`: a number, or a known name with or
/// without `SIG`, or `RTMIN+n`.
fn valid_signal(sig: &str) -> bool {
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN", "RTMAX", "UNUSED",
    ];
    if let Ok(n) = sig.parse::<u32>() {
        return n > 0 && n < 65;
    }
    let name = sig.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    if NAMES.contains(&name) {
        return true;
    }
    for base in ["RTMIN+", "RTMAX-"] {
        if let Some(n) = name.strip_prefix(base) {
            return n.parse::<u32>().is_ok_and(|n| n > 0 && n < 31);
        }
    }
    false
}

/// Go's `time.Duration.String()`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_frac(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_frac(nanos, 1_000_000));
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, (secs % 3600) / 60);
    let s_nanos = nanos - u128::from(h * 3600 + m * 60) * 1_000_000_000;
    let s = trim_frac(s_nanos, 1_000_000_000);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

fn trim_frac(n: u128, unit: u128) -> String {
    let whole = n / unit;
    let frac = n % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = unit.to_string().len() - 1;
    let f = format!("{frac:0digits$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// The config JSON and the history text of a HEALTHCHECK.
fn healthcheck(hc: &Healthcheck) -> (serde_json::Value, String) {
    let (test, interval, timeout, start_period, start_interval, retries) = match hc {
        Healthcheck::None => (vec!["NONE".to_owned()], None, None, None, None, None),
        Healthcheck::Cmd {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let t = match test {
                ShellOrExec::Shell(s) => vec!["CMD-SHELL".to_owned(), s.clone()],
                ShellOrExec::Exec(v) => {
                    let mut t = vec!["CMD".to_owned()];
                    t.extend(v.iter().cloned());
                    t
                }
            };
            (
                t,
                *interval,
                *timeout,
                *start_period,
                *start_interval,
                *retries,
            )
        }
    };
    let mut json = serde_json::Map::new();
    json.insert("Test".into(), serde_json::json!(test));
    let nanos =
        |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    for (k, d) in [
        ("Interval", interval),
        ("Timeout", timeout),
        ("StartPeriod", start_period),
        ("StartInterval", start_interval),
    ] {
        if nanos(d) != 0 {
            json.insert(k.into(), serde_json::json!(nanos(d)));
        }
    }
    if let Some(r) = retries.filter(|r| *r != 0) {
        json.insert("Retries".into(), serde_json::json!(r));
    }
    let text = format!(
        "{{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        go_list_v(&test),
        go_duration(interval.unwrap_or_default()),
        go_duration(timeout.unwrap_or_default()),
        go_duration(start_period.unwrap_or_default()),
        go_duration(start_interval.unwrap_or_default()),
        retries.unwrap_or(0)
    );
    (serde_json::Value::Object(json), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_like_buildkit() {
        assert_eq!(dest_path("/app", "."), "/app/");
        assert_eq!(dest_path("/app", "x"), "/app/x");
        assert_eq!(dest_path("/app", "x/"), "/app/x/");
        assert_eq!(dest_path("/", "/etc/../opt/"), "/opt/");
        assert_eq!(dest_path("/", "/"), "/");
        assert_eq!(normalize_workdir("/a", "b/../c"), "/a/c");
        assert_eq!(normalize_workdir("/a", "/x"), "/x");
    }

    #[test]
    fn go_formatting() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(5)), "5ms");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(
            go_list_q(&["echo".into(), "a \"b\"".into()]),
            r#"["echo" "a \"b\""]"#
        );
    }

    #[test]
    fn ports_and_signals() {
        assert_eq!(parse_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(parse_port_spec("8000-8002/tcp").unwrap().len(), 3);
        assert!(parse_port_spec("80/xyz").is_err());
        assert!(valid_signal("SIGTERM") && valid_signal("term") && valid_signal("9"));
        assert!(valid_signal("SIGRTMIN+3"));
        assert!(!valid_signal("SIGFOO"));
    }
}
