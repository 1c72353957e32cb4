//! `kiln build [OPTIONS] CONTEXT|-|GIT-URL|TAR-URL`: build an image from a
//! Dockerfile, like `docker build` with BuildKit, without a daemon.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{IsTerminal, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use kiln_build::{BuildError, BuildRequest, BuildResult, OutputSpec};
use kiln_oci::Reference;
use kiln_solver::CancellationToken;
use kiln_solver::ops::Network;
use kiln_store::{ArchiveFormat, Store};

use crate::Exit;
use crate::cli::GlobalArgs;
use crate::diagnostic::{Fatal, SourceError};
use crate::dockerfile_input::DockerfileInput;
use crate::fetch_progress::FetchView;
use crate::progress::{FAILURE_TAIL_LINES, Mode, Progress, ProgressFlag};
use crate::registry_glue::{BuildPuller, RegistryArgs, Render, push_from_store};

/// Build an image from a Dockerfile
#[derive(Debug, Args)]
#[command(after_help = "\
CONTEXT is what `docker build` accepts:
  DIR                          a directory (-f PATH is relative to the current directory)
  -                            standard input: a tar archive (plain, gzip, bzip2, xz or
                               zstd) holding the context and its Dockerfile, or a
                               Dockerfile with an empty context
  https://host/o/r.git, git@host:o/r.git, git://host/r, ssh://[user@]host/r,
  github.com/o/r               a git repository, optionally URL#REF:SUBDIR (branch, tag,
                               commit or refs/pull/N/head; SUBDIR is the context root),
                               fetched shallowly with the `git` program, submodules included
                               (.git left out unless --build-arg BUILDKIT_CONTEXT_KEEP_GIT_DIR=1)
  http(s)://host/ctx.tar.gz    a tarball (any compression; -f names the Dockerfile inside)
                               or a Dockerfile
Remote contexts are kept in ROOT/contexts and reused while the ref or the
content is unchanged (`kiln prune` removes them). The context's .dockerignore,
or <Dockerfile>.dockerignore next to the Dockerfile, applies to every kind.
Base images come from the store (`kiln import`, `kiln load`, `kiln pull`,
earlier builds) or, when missing, from their registry.

Examples:
  kiln build -t app .
  kiln build -t app - < Dockerfile
  tar -cz . | kiln build -t app -
  kiln build -t app 'https://git.example.com/o/app.git#v1.2:docker'
  kiln build -t app -f build/Dockerfile https://example.com/ctx.tar.gz")]
pub struct BuildArgs {
    /// Name the image (`name:tag`); may be repeated
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// The Dockerfile (`-` for standard input) [default: CONTEXT/Dockerfile]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Set a build argument (`K=V`, or `K` to take the caller's value)
    #[arg(long = "build-arg", value_name = "K=V")]
    pub arg: Vec<String>,
    /// Build this stage (default: the last one); unused stages never run
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Do not use the build cache (results are still recorded)
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the build cache for these stages
    #[arg(long, value_name = "STAGE", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// Check the registry for a newer version of every base image (bases
    /// missing from the store are always pulled)
    #[arg(long)]
    pub pull: bool,
    /// Network of RUN steps: default, none or host
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE` or `id=ID,env=VAR`
    #[arg(long, value_name = "SPEC")]
    pub secret: Vec<String>,
    /// Add a label to the image (`K=V`)
    #[arg(long, value_name = "K=V")]
    pub label: Vec<String>,
    /// Progress output: auto, tty, plain or json
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressFlag,
    /// Also write the result: `type=oci|docker|tar,dest=FILE` (`-`: stdout), `type=local,dest=DIR`, or DIR
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub output: Vec<String>,
    /// Write the image id to this file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Push the image to the registries its -t names say, after the build
    #[arg(long)]
    pub push: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Run at most N steps at once, RUN processes included. Without it every
    /// step whose inputs are ready starts at once (like BuildKit) and only
    /// kiln's own CPU work (hashing, diffing, tar, compression, copies) is
    /// bounded, by the number of cores; a RUN step's process, which usually
    /// waits on I/O or the network, holds no core.
    #[arg(short = 'j', long, value_name = "N", verbatim_doc_comment)]
    pub jobs: Option<usize>,
    /// For every step that misses the cache, say which input changed
    #[arg(long)]
    pub explain: bool,
    /// Print only the image id
    #[arg(short, long)]
    pub quiet: bool,
    /// The build context: a directory, `-`, a git URL or a tarball URL
    #[arg(value_name = "CONTEXT")]
    pub context: String,
}

fn fatal(message: String) -> anyhow::Error {
    anyhow::Error::new(Fatal {
        exit: Exit::FAILURE,
        message,
    })
}

/// What a build reads: the opened context, its Dockerfile as errors name
/// it, and the scope `--explain` compares builds within.
struct Inputs {
    context: kiln_context::Context,
    dockerfile: DockerfileInput,
    scope: String,
    /// The context root is a temporary directory (stdin).
    scratch_root: bool,
}

/// Open the build context the arguments name — a directory, `-` (a tar in
/// any compression, or a Dockerfile with an empty context), a git URL or a
/// tarball URL, exactly as `docker build` reads them — and its Dockerfile.
/// Remote contexts are fetched into `ROOT/contexts` (reused while their ref
/// or content is unchanged); `fetched` sees the fetch's progress.
fn inputs(
    args: &BuildArgs,
    root: &Path,
    fetched: impl Fn(&kiln_context::Progress) + Send + Sync + 'static,
) -> Result<Inputs> {
    let arg = args.context.as_str();
    let source = kiln_context::Source::parse(arg);
    let stdin_file = args.file.as_deref() == Some(Path::new("-"));
    if stdin_file && source == kiln_context::Source::Stdin {
        bail!("the context and the Dockerfile cannot both come from standard input");
    }
    let spec = match &args.file {
        None => kiln_context::DockerfileSpec::Default,
        Some(_) if stdin_file => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading the Dockerfile from standard input")?;
            kiln_context::DockerfileSpec::Text(bytes)
        }
        Some(f) => kiln_context::DockerfileSpec::Path(f.clone()),
    };
    let opener = kiln_context::Opener::new(root.join("contexts"))
        .dockerfile(spec)
        .keep_git_dir(keep_git_dir(args)?)
        .progress(fetched);
    let context = match &source {
        // stdin was read for `-f -` already: the context is the directory.
        kiln_context::Source::Stdin => opener.open_source(&source, std::io::stdin().lock()),
        _ => opener.open_source(&source, std::io::empty()),
    }
    .map_err(|e| match e {
        // It names the context already.
        kiln_context::ContextError::NotADirectory { .. } => fatal(e.to_string()),
        e => fatal(format!("build context `{arg}`: {e}")),
    })?;
    let name = match (&source, &context.dockerfile().path) {
        (_, None) => "<stdin>".to_owned(),
        (kiln_context::Source::Dir(_), Some(p)) if args.file.is_some() => p.display().to_string(),
        (kiln_context::Source::Dir(_), Some(_)) => "Dockerfile".to_owned(),
        // Inside a fetched context: relative to its root.
        (_, Some(_)) => context.dockerfile().name.clone(),
    };
    // `--explain` compares with the last build of the same Dockerfile from
    // the same place: a directory by its path, a remote context by its URL
    // (not by the cache directory of one commit).
    let place = match &source {
        kiln_context::Source::Dir(_) => context.root().display().to_string(),
        kiln_context::Source::Stdin => "-".to_owned(),
        kiln_context::Source::Git(_) | kiln_context::Source::Url(_) => arg.to_owned(),
    };
    let dockerfile = DockerfileInput {
        name,
        bytes: context.dockerfile().text.clone(),
    };
    Ok(Inputs {
        scope: format!("{place}|{}", dockerfile.name),
        scratch_root: source == kiln_context::Source::Stdin,
        context,
        dockerfile,
    })
}

/// `--build-arg BUILDKIT_CONTEXT_KEEP_GIT_DIR=…`: keep `.git` in a git
/// context, read as BuildKit does (Go's `strconv.ParseBool`).
fn keep_git_dir(args: &BuildArgs) -> Result<bool> {
    let Some(value) = args.arg.iter().rev().find_map(|a| {
        a.strip_prefix(KEEP_GIT_DIR)
            .and_then(|rest| rest.strip_prefix('='))
    }) else {
        return Ok(false);
    };
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => {
            bail!("--build-arg {KEEP_GIT_DIR}={other}: expected a boolean (1, true, 0, false)")
        }
    }
}

/// BuildKit's build arg that keeps `.git` in git contexts.
const KEEP_GIT_DIR: &str = "BUILDKIT_CONTEXT_KEEP_GIT_DIR";

fn key_value(flag: &str, text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => bail!("{flag} {text}: expected KEY=VALUE"),
    }
}

/// `--secret id=ID,src=FILE` / `id=ID,env=VAR` / `id=ID` (the variable ID).
fn secret(text: &str) -> Result<(String, Vec<u8>)> {
    let (mut id, mut src, mut env) = (None, None, None);
    for field in text.split(',') {
        let (k, v) = field.split_once('=').with_context(|| {
            format!("--secret {text}: expected id=ID,src=FILE or id=ID,env=VAR")
        })?;
        match k {
            "id" => id = Some(v.to_owned()),
            "src" | "source" => src = Some(v.to_owned()),
            "env" => env = Some(v.to_owned()),
            "type" if v == "file" || v == "env" => {}
            other => bail!("--secret {text}: unknown field `{other}` (use id, src, env)"),
        }
    }
    let id = id
        .or_else(|| {
            src.as_deref()
                .and_then(|s| Path::new(s).file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .with_context(|| format!("--secret {text}: missing id="))?;
    if let Some(src) = src {
        let data = fs_err::read(&src).with_context(|| format!("--secret id={id}"))?;
        return Ok((id, data));
    }
    let var = env.unwrap_or_else(|| id.clone());
    match std::env::var_os(&var) {
        Some(v) => Ok((id, v.into_encoded_bytes())),
        None => bail!(
            "--secret id={id}: environment variable {var} is not set (give src=FILE or env=VAR)"
        ),
    }
}

fn request(
    args: &BuildArgs,
    context: Arc<kiln_context::Context>,
    dockerfile: &DockerfileInput,
    scope: String,
) -> Result<BuildRequest> {
    let mut req = BuildRequest::new(dockerfile.bytes.clone(), context);
    for t in &args.tags {
        let r = Reference::parse(t).with_context(|| format!("invalid tag `{t}`"))?;
        req.tags.push(r);
    }
    for a in &args.arg {
        match a.split_once('=') {
            Some((k, v)) => {
                req.options.build_args.insert(k.to_owned(), v.to_owned());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    req.options.build_args.insert(a.clone(), v);
                }
            }
        }
    }
    let mut labels = BTreeMap::new();
    for l in &args.label {
        let (k, v) = key_value("--label", l)?;
        labels.insert(k, v);
    }
    req.options.labels = labels;
    req.options.target.clone_from(&args.target);
    req.options
        .no_cache_filter
        .clone_from(&args.no_cache_filter);
    req.options.network = match args.network.as_deref() {
        None | Some("default") => Network::Default,
        Some("none") => Network::None,
        Some("host") => Network::Host,
        Some(other) => bail!("--network {other}: use default, none or host"),
    };
    req.options.step_scope = scope;
    let mut secrets = HashMap::new();
    for s in &args.secret {
        let (id, data) = secret(s)?;
        secrets.insert(id, data);
    }
    req.secrets = secrets;
    req.no_cache = args.no_cache;
    req.explain = args.explain;
    req.pull = args.pull;
    if let Some(j) = args.jobs {
        if j == 0 {
            bail!("--jobs must be at least 1");
        }
        req.jobs = Some(j);
    }
    Ok(req)
}

/// `kiln build`.
pub fn run(global: &GlobalArgs, args: &BuildArgs) -> Result<Exit> {
    let outputs = args
        .output
        .iter()
        .map(|o| OutputSpec::parse(o).map_err(|e| fatal(format!("{e}"))))
        .collect::<Result<Vec<_>>>()?;
    if args.push && args.tags.is_empty() {
        bail!("--push needs a name to push to: give -t REGISTRY/REPOSITORY:TAG");
    }
    let root = global.root_dir();
    let mode = args.progress.mode();
    let fetch_view = FetchView::new(mode, args.quiet);
    let Inputs {
        mut context,
        dockerfile,
        scope,
        scratch_root,
    } = {
        let view = Arc::clone(&fetch_view);
        let opened = inputs(args, &root, move |p| view.handle(p));
        fetch_view.finish(opened.is_ok());
        opened?
    };
    let store = Store::open(&root)?;
    // File digests are kept between builds: an unchanged file is never
    // hashed twice.
    // One file per context root (see `StatCache::file_for`); the single
    // file of older versions, shared by every context, goes.
    let _ = std::fs::remove_file(root.join("cache").join("context-stat"));
    // A context extracted from stdin lives for this build only: its stamps
    // could never be used again.
    let stat_cache = if scratch_root {
        None
    } else {
        let file =
            kiln_context::StatCache::file_for(&root.join("cache").join("stat"), context.root());
        let cache = match kiln_context::StatCache::open(&file) {
            Ok(cache) => cache,
            // It only saves hashing: a damaged one is dropped, not fatal.
            Err(e @ kiln_context::ContextError::StatCache { .. }) => {
                eprintln!("WARNING: {e}; hashing the context afresh");
                let _ = std::fs::remove_file(&file);
                kiln_context::StatCache::open(&file)?
            }
            Err(e) => return Err(e.into()),
        };
        let cache = Arc::new(cache);
        context.set_stat_cache(Arc::clone(&cache));
        Some(cache)
    };
    let mut request = request(args, Arc::new(context), &dockerfile, scope)?;
    request.puller = Some(Arc::new(BuildPuller {
        global: global.clone(),
        args: args.registry.clone(),
        store: store.clone(),
        quiet: args.quiet,
    }));
    let helper = std::env::current_exe().context("locating the kiln binary")?;
    let runtime = kiln_runtime::Runtime::open(&root.join("runtime"), &helper)?;

    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let log_path = root
        .join("logs")
        .join(format!("build-{stamp}-{}.log", std::process::id()));
    let sink_out: Box<dyn std::io::Write + Send> = if args.quiet {
        Box::new(std::io::sink())
    } else {
        Box::new(std::io::stderr())
    };
    let progress = Progress::new(mode, sink_out, Some(&log_path))
        .with_context(|| format!("creating the build log {}", log_path.display()))?;

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let cancel = CancellationToken::new();
    let result = tokio.block_on(async {
        let c = cancel.clone();
        let ctrl_c = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                c.cancel();
            }
        });
        let r = kiln_build::build(&store, &runtime, request, progress.sink(), cancel.clone()).await;
        ctrl_c.abort();
        r
    });
    if let Err(e) = fs_err::create_dir_all(root.join("cache"))
        .map_err(anyhow::Error::from)
        .and_then(|()| match &stat_cache {
            Some(c) => c.save().map_err(anyhow::Error::from),
            None => Ok(()),
        })
    {
        progress.note(&format!(
            "WARNING: could not save the context stat cache: {e:#}"
        ));
    }
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            progress.finish(false);
            return Err(render_failure(&e, &dockerfile, &progress, &log_path, mode));
        }
    };
    for w in &result.warnings {
        progress.note(&format!("WARNING: {w}"));
    }
    export(&store, &result, &request_tags(args), &outputs, &progress)?;
    if let Some(path) = &args.iidfile {
        write_file(path, result.image.id().as_str().as_bytes())?;
    }
    progress.note(&format!("writing image {} done", result.image.id()));
    for t in &result.image.tags {
        progress.note(&format!("naming to {t} done"));
    }
    progress.finish(true);
    if args.push {
        for target in request_tags(args) {
            let render = Render::plain(args.quiet, "Push");
            let pushed = push_from_store(
                global,
                &args.registry,
                &store,
                &result.image,
                &target,
                kiln_oci::Compression::Gzip,
                &render,
            )?;
            if !args.quiet {
                eprintln!("pushed {} (digest {})", target.familiar(), pushed.digest);
            }
        }
    }
    if args.quiet {
        println!("{}", result.image.id());
    }
    Ok(Exit::SUCCESS)
}

fn request_tags(args: &BuildArgs) -> Vec<Reference> {
    args.tags
        .iter()
        .filter_map(|t| Reference::parse(t).ok())
        .collect()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs_err::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Run `f` with the destination (`-` is standard output) as a writer.
fn with_dest(
    dest: &str,
    f: impl FnOnce(Box<dyn std::io::Write>) -> Result<(), BuildError>,
) -> Result<()> {
    if dest == "-" {
        if std::io::stdout().is_terminal() {
            bail!(
                "refusing to write an archive to a terminal; redirect standard output or give dest=FILE"
            );
        }
        f(Box::new(std::io::stdout().lock()))?;
        return Ok(());
    }
    let file = fs_err::File::create(dest)?;
    f(Box::new(std::io::BufWriter::new(file)))?;
    Ok(())
}

fn export(
    store: &Store,
    result: &BuildResult,
    tags: &[Reference],
    outputs: &[OutputSpec],
    progress: &Progress,
) -> Result<()> {
    for out in outputs {
        match out {
            OutputSpec::Image => {}
            OutputSpec::Oci { dest } | OutputSpec::Docker { dest } => {
                let format = if matches!(out, OutputSpec::Oci { .. }) {
                    ArchiveFormat::Oci
                } else {
                    ArchiveFormat::Docker
                };
                with_dest(dest, |w| {
                    let mut w =
                        kiln_build::export::write_archive(store, &result.image, tags, format, w)?;
                    w.flush().map_err(|source| BuildError::Io {
                        what: format!("writing {dest}"),
                        source,
                    })
                })?;
                progress.note(&format!("exported the image to {dest}"));
            }
            OutputSpec::Tar { dest } => {
                with_dest(dest, |w| {
                    let mut w = kiln_build::export::write_filesystem_tar(store, &result.layers, w)?;
                    w.flush().map_err(|source| BuildError::Io {
                        what: format!("writing {dest}"),
                        source,
                    })
                })?;
                progress.note(&format!("exported the filesystem to {dest}"));
            }
            OutputSpec::Local { dest } => {
                kiln_build::export::flatten(store, &result.layers, dest)?;
                progress.note(&format!("exported the filesystem to {}", dest.display()));
            }
        }
    }
    Ok(())
}

/// A failed build, rendered for people: the step, its Dockerfile lines with
/// a caret, the last lines of its output, its exit code and the full log.
fn render_failure(
    err: &BuildError,
    dockerfile: &DockerfileInput,
    progress: &Progress,
    log_path: &Path,
    mode: Mode,
) -> anyhow::Error {
    match err {
        BuildError::Dockerfile(e) => anyhow::Error::new(dockerfile.located(e)),
        BuildError::At {
            message,
            location,
            help,
        } => anyhow::Error::new(source_error(dockerfile, message, *location, help.clone())),
        BuildError::Step {
            vertex,
            name,
            location,
            exit_code,
            source,
        } => {
            let mut text = format!("{name}: {source}\n");
            let tail = progress.tail(*vertex, FAILURE_TAIL_LINES);
            if !tail.is_empty() && mode != Mode::Plain {
                let _ = writeln!(text, "  last output lines:");
                for l in &tail {
                    let _ = writeln!(text, "  | {l}");
                }
            }
            if let Some(loc) = location {
                let src = source_error(dockerfile, "", loc.location, None);
                let rendered = src.render();
                // Drop the render's own `error:` line: ours is above.
                for l in rendered.lines().skip(1) {
                    let _ = writeln!(text, "{l}");
                }
                let extra_lines = loc.end_line.saturating_sub(loc.location.line);
                if extra_lines > 0 {
                    let all = String::from_utf8_lossy(&dockerfile.bytes);
                    let width = loc.end_line.to_string().len();
                    for n in loc.location.line + 1..=loc.end_line {
                        let line = all
                            .split('\n')
                            .nth(n - 1)
                            .unwrap_or("")
                            .trim_end_matches('\r');
                        let _ = writeln!(text, "{n:>width$} | {line}");
                    }
                }
            }
            if let Some(code) = exit_code {
                let _ = writeln!(text, "exit code: {code}");
            }
            let _ = write!(text, "full log: {}", log_path.display());
            fatal(text)
        }
        other => {
            let mut msg = other.to_string();
            if let Some(h) = other.help() {
                let _ = write!(msg, "\n  = help: {h}");
            }
            fatal(msg)
        }
    }
}

fn source_error(
    dockerfile: &DockerfileInput,
    message: &str,
    location: kiln_dockerfile::Location,
    help: Option<String>,
) -> SourceError {
    let text = String::from_utf8_lossy(&dockerfile.bytes);
    let line_text = text
        .split('\n')
        .nth(location.line.saturating_sub(1))
        .unwrap_or("")
        .trim_end_matches('\r')
        .trim_start_matches('\u{feff}')
        .to_owned();
    SourceError {
        message: message.to_owned(),
        file: dockerfile.name.clone(),
        line: location.line,
        column: location.column,
        width: location.width,
        line_text,
        help,
    }
}
