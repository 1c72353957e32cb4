//! kiln's Dockerfile builds: the typed IR and build arguments become an op
//! graph ([`convert`]), the solver runs it with an executor bound to the
//! store, the runtime and the build context ([`executor`]), and the result
//! becomes an image in the store and, if asked, an archive or a directory
//! ([`export`]).
//!
//! It is for: BuildKit's Dockerfile semantics (stages reachable from the
//! target, ARG scoping, variable expansion, image config and history like
//! docker's, ONBUILD), and binding the solver's generic ops to kiln's
//! store and runtime.
//!
//! It is not for: parsing (crate `dockerfile`), scheduling and cache keys
//! (crate `solver`), rendering progress (the CLI renders the solver's
//! events), or reading contexts from git or tarballs (crate `context`).
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), kiln_build::BuildError> {
//! use std::sync::Arc;
//! use kiln_build::BuildRequest;
//!
//! let store = kiln_store::Store::open("/var/lib/kiln")?;
//! let runtime = kiln_runtime::Runtime::open(
//!     std::path::Path::new("/var/lib/kiln/runtime"),
//!     std::path::Path::new("/proc/self/exe"),
//! ).map_err(|e| kiln_build::BuildError::request(e.to_string(), None))?;
//! let context = kiln_context::Context::from_dir(".", kiln_context::DockerfileSpec::Default)
//!     .map_err(|e| kiln_build::BuildError::request(e.to_string(), None))?;
//! let request = BuildRequest::new(context.dockerfile().text.clone(), Arc::new(context))
//! .tag("hello".parse()?);
//! let result = kiln_build::build(&store, &runtime, request, kiln_solver::discard_events(), Default::default()).await?;
//! println!("{}", result.image.id());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod context;
pub mod convert;
mod error;
pub mod executor;
pub mod export;

use std::collections::HashMap;
use std::sync::Arc;

use kiln_dockerfile::Dockerfile;
use kiln_oci::Reference;
use kiln_runtime::Runtime;
use kiln_solver::{CancellationToken, EventSink, SolveError, SolveOptions, Solver};
use kiln_store::{ImageRecord, LayerRecord, Store};

pub use convert::{BaseImage, ConvertOptions, ImageSource, Plan, convert};
pub use error::{BuildError, ExecFailed, StepLocation};
pub use executor::{Fs, KilnExecutor, StoreCache};
pub use export::OutputSpec;

/// Everything one build needs.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The Dockerfile's bytes.
    pub dockerfile: Vec<u8>,
    /// The build context (its Dockerfile is not read from here: see
    /// `dockerfile`).
    pub context: Arc<kiln_context::Context>,
    /// Build arguments, target, labels, network, step identity.
    pub options: ConvertOptions,
    /// Names for the image.
    pub tags: Vec<Reference>,
    /// `--no-cache`: look nothing up (results are still recorded).
    pub no_cache: bool,
    /// `--secret` values by id (never in a layer, key or history).
    pub secrets: HashMap<String, Vec<u8>>,
    /// At most this many steps in progress at once, RUN processes included
    /// (`--jobs`); `None`: every ready step starts at once, and only kiln's
    /// own CPU work (hashing, diffing, tar, compression, copies) is bounded,
    /// by the number of cores.
    pub jobs: Option<usize>,
    /// Explain every cache miss (`--explain`).
    pub explain: bool,
    /// Fetches base images the store lacks (from registries); `None`: the
    /// store only.
    pub puller: Option<Arc<dyn BasePuller>>,
    /// `--pull`: ask the puller for every base image, even those in the
    /// store (a newer one may have been pushed).
    pub pull: bool,
}

/// Brings a base image into the store, e.g. from its registry (the CLI
/// implements it over kiln-registry). A build whose bases are all in the
/// store never calls it unless `--pull` is given.
pub trait BasePuller: std::fmt::Debug + Send + Sync {
    /// Pull `reference` into the store and return its record.
    fn pull(
        &self,
        reference: &Reference,
    ) -> Result<ImageRecord, Box<dyn std::error::Error + Send + Sync>>;
}

impl BuildRequest {
    /// A request with defaults: last stage, no args, cache on, every ready
    /// step at once (kiln's own CPU work one per core).
    pub fn new(dockerfile: Vec<u8>, context: Arc<kiln_context::Context>) -> BuildRequest {
        BuildRequest {
            dockerfile,
            context,
            options: ConvertOptions::default(),
            tags: Vec::new(),
            no_cache: false,
            secrets: HashMap::new(),
            jobs: None,
            explain: false,
            puller: None,
            pull: false,
        }
    }

    /// Add a name for the image.
    #[must_use]
    pub fn tag(mut self, name: Reference) -> BuildRequest {
        self.tags.push(name);
        self
    }

    /// Set a build argument.
    #[must_use]
    pub fn build_arg(mut self, key: &str, value: &str) -> BuildRequest {
        self.options
            .build_args
            .insert(key.to_owned(), value.to_owned());
        self
    }

    /// Build this stage instead of the last one.
    #[must_use]
    pub fn target(mut self, stage: &str) -> BuildRequest {
        self.options.target = Some(stage.to_owned());
        self
    }
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The image, in the store.
    pub image: ImageRecord,
    /// Its layers, bottom first.
    pub layers: Vec<LayerRecord>,
    /// Warnings (unused build args…).
    pub warnings: Vec<String>,
    /// Steps run.
    pub executed: usize,
    /// Steps found in the cache.
    pub cached: usize,
}

/// Base images from the store, else (or always, with `--pull`) from the
/// puller.
struct StoreImages<'a> {
    store: &'a Store,
    puller: Option<&'a dyn BasePuller>,
    always: bool,
}

impl ImageSource for StoreImages<'_> {
    fn image(&self, reference: &str) -> Result<Option<BaseImage>, BuildError> {
        let found = if self.always && self.puller.is_some() {
            None
        } else {
            match self.store.resolve(reference) {
                Ok(record) => Some(record),
                Err(kiln_store::StoreError::NoSuchImage(_)) => None,
                Err(e) => return Err(e.into()),
            }
        };
        let record = match (found, self.puller) {
            (Some(record), _) => record,
            (None, None) => return Ok(None),
            (None, Some(puller)) => {
                let r = Reference::parse(reference)
                    .map_err(|e| BuildError::request(e.to_string(), None))?;
                puller.pull(&r).map_err(|e| {
                    BuildError::request(
                        format!("not in the store, and pulling it failed: {e}"),
                        Some("check the name and the registry, or make the image locally (`kiln import`, `kiln load`, a build tagged with that name)"),
                    )
                })?
            }
        };
        let config = self.store.image_config(&record)?;
        Ok(Some(BaseImage { record, config }))
    }
}

/// `# syntax=`: kiln's built-in frontend serves `docker/dockerfile:1…`;
/// any other frontend is an error, never a silent fallback.
fn check_syntax(df: &Dockerfile) -> Result<(), BuildError> {
    let Some(d) = df.tree.directives.iter().find(|d| d.name == "syntax") else {
        return Ok(());
    };
    let value = d.value.trim();
    let image = value.split('@').next().unwrap_or(value);
    let image = image.strip_prefix("docker.io/").unwrap_or(image);
    // `1`, `1.7`, `1.7.1`, and the labs channel (`1.7-labs`: kiln has its
    // features, e.g. `COPY --parents`).
    let ok = image.strip_prefix("docker/dockerfile:").is_some_and(|tag| {
        let tag = tag.strip_suffix("-labs").unwrap_or(tag);
        let mut parts = tag.split('.');
        parts.next() == Some("1")
            && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if ok {
        return Ok(());
    }
    Err(BuildError::At {
        message: format!(
            "unsupported frontend `{value}`: kiln builds Dockerfiles with its built-in docker/dockerfile:1 frontend"
        ),
        location: df.tree.locate(d.span),
        help: Some("use `# syntax=docker/dockerfile:1` or remove the directive".into()),
    })
}

/// Parse, convert and run a build, and commit the image to the store.
/// Progress goes to `events`; `cancel` stops the build (processes killed,
/// nothing half-written).
pub async fn build(
    store: &Store,
    runtime: &Runtime,
    request: BuildRequest,
    events: EventSink,
    cancel: CancellationToken,
) -> Result<BuildResult, BuildError> {
    let df = Dockerfile::parse(&request.dockerfile)?;
    check_syntax(&df)?;
    let _lease = store.lease()?;
    let images = StoreImages {
        store,
        puller: request.puller.as_deref(),
        always: request.pull,
    };
    let plan = convert(&df, &request.options, &images)?;
    let executor = KilnExecutor::new(
        store.clone(),
        runtime.clone(),
        Arc::clone(&request.context),
        plan.images.clone(),
        request.secrets.clone(),
    );
    let solver = Solver::new(Arc::new(executor), Arc::new(StoreCache::new(store.clone())))
        .options(SolveOptions {
            jobs: request.jobs.map(|j| j.max(1)),
            cpu: kiln_solver::default_jobs(),
            no_cache: request.no_cache,
            explain: request.explain,
        })
        .events(explaining(events, KilnExecutor::context_lists(store)))
        .cancel_token(cancel);
    let solution = solver
        .solve(&plan.graph, &[plan.target])
        .await
        .map_err(|e| step_error(&plan, e))?;
    let Some(fs) = solution.output(plan.target) else {
        return Err(BuildError::request(
            "internal error: the build produced no result",
            None,
        ));
    };
    let layers = match fs {
        Fs::Layers(l) => l.to_vec(),
        Fs::Context(..) => {
            return Err(BuildError::request(
                "internal error: the build produced a context",
                None,
            ));
        }
    };
    let image = export::commit(store, plan.image.clone(), &layers, &request.tags)?;
    Ok(BuildResult {
        image,
        layers,
        warnings: plan.warnings.clone(),
        executed: solution.executed,
        cached: solution.cached,
    })
}

/// Events as the solver sends them, with a changed context checksum told
/// as the files that changed.
fn explaining(events: EventSink, lists: std::path::PathBuf) -> EventSink {
    Arc::new(move |event| match event {
        kiln_solver::Event::Missed {
            vertex,
            name,
            changes,
            known,
        } => events(kiln_solver::Event::Missed {
            vertex,
            name,
            changes: context::explain(changes, &lists),
            known,
        }),
        other => events(other),
    })
}

fn step_error(plan: &Plan, err: SolveError) -> BuildError {
    match err {
        SolveError::Op {
            vertex,
            name,
            source,
        }
        | SolveError::ContentKey {
            vertex,
            name,
            source,
        } => BuildError::Step {
            vertex,
            name,
            location: plan.steps.get(&vertex).copied(),
            exit_code: source.downcast_ref::<ExecFailed>().map(|e| e.exit_code),
            source,
        },
        SolveError::Cancelled => BuildError::Cancelled,
        other => BuildError::Solve(other),
    }
}
