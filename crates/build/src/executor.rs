//! The executor: runs [`KilnOp`]s against the store (snapshots, layers),
//! the runtime (RUN steps) and the build context (COPY sources), and the
//! store's cache index as the solver's [`Cache`].
//!
//! ```text
//!  Solver ──execute(op, inputs)──▶ Executor ──▶ runtime.run_step (exec)
//!     │                               ├──────▶ solver::ops::apply_actions (file)
//!     │                               └──────▶ store: layers, snapshots
//!     └──get/put(key)──▶ StoreCache ──▶ store cache index (redb)
//! ```
//!
//! An op's output is a filesystem: the stack of layers it is made of (each
//! one a blob and a snapshot in the store), or a build context.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use kiln_oci::layer::CreateOptions;
use kiln_runtime::{Runtime, Secret, StepConfig, StepMount};
use kiln_solver::ops::{
    Copy, ExecOp, FileAction, FileOp, KilnOp, MountSource, Network, Owner, Sharing, Source,
    SourceOp, View, apply_actions, apply_actions_with_users,
};
use kiln_solver::{
    BoxError, Cache, ContentKey, Executor, Key, OpContext, OpError, PreImage, Stream,
};
use kiln_store::{LayerRecord, Store};
use tokio::io::AsyncWrite;

use kiln_context::Context;

use crate::error::ExecFailed;

/// What an op produces: a filesystem.
#[derive(Clone, Debug)]
pub enum Fs {
    /// A stack of layers, bottom first (empty: `scratch`).
    Layers(Arc<Vec<LayerRecord>>),
    /// The build context's files: only `visible` (what the step reads,
    /// `.dockerignore` applied) exists.
    Context(Arc<Context>, Arc<HashSet<PathBuf>>),
}

impl Fs {
    /// The layers, or an error for a context.
    pub fn layers(&self) -> Result<&[LayerRecord], OpError> {
        match self {
            Fs::Layers(l) => Ok(l),
            Fs::Context(..) => Err(OpError::failed(
                "internal error: a build context used as a root filesystem",
            )),
        }
    }
}

/// One read of the build context: include and exclude patterns.
type ContextRead = (Vec<String>, Vec<String>);

/// Runs ops for one build.
#[derive(Debug)]
pub struct KilnExecutor {
    store: Store,
    runtime: Runtime,
    context: Arc<Context>,
    images: HashMap<String, kiln_store::ImageRecord>,
    secrets: HashMap<String, Vec<u8>>,
    /// What each context read selects, computed with its content key.
    selected: Mutex<HashMap<ContextRead, crate::context::Selected>>,
    /// `ADD URL` downloads of this build, by URL.
    downloads: tokio::sync::Mutex<HashMap<String, Downloaded>>,
    /// `ADD GIT-URL` checkouts of this build, by source.
    git_trees: tokio::sync::Mutex<HashMap<GitKey, kiln_context::GitTree>>,
}

/// One git source: URL, ref, sub-directory, keep `.git`.
type GitKey = (String, Option<String>, Option<String>, bool);

impl KilnExecutor {
    /// An executor over `store` and `runtime` for a build with `context`;
    /// `images` are the base images conversion resolved (by normalized
    /// reference), `secrets` the values of `--secret`.
    pub fn new(
        store: Store,
        runtime: Runtime,
        context: Arc<Context>,
        images: HashMap<String, kiln_store::ImageRecord>,
        secrets: HashMap<String, Vec<u8>>,
    ) -> KilnExecutor {
        KilnExecutor {
            store,
            runtime,
            context,
            images,
            secrets,
            selected: Mutex::new(HashMap::new()),
            downloads: tokio::sync::Mutex::new(HashMap::new()),
            git_trees: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Where the per-checksum listings of context reads are kept.
    pub fn context_lists(store: &Store) -> PathBuf {
        store.root().join("cache").join("context-lists")
    }

    async fn select(
        &self,
        include: &[String],
        exclude: &[String],
    ) -> Result<crate::context::Selected, OpError> {
        let k = (include.to_vec(), exclude.to_vec());
        if let Some(s) = self.selected.lock().ok().and_then(|m| m.get(&k).cloned()) {
            return Ok(s);
        }
        let ctx = Arc::clone(&self.context);
        let lists = Self::context_lists(&self.store);
        let (inc, exc) = k.clone();
        let s = kiln_solver::cpu(move || crate::context::select(&ctx, &inc, &exc, &lists))
            .await?
            .map_err(OpError::failed)?;
        if let Ok(mut m) = self.selected.lock() {
            m.insert(k, s.clone());
        }
        Ok(s)
    }

    fn image(&self, reference: &str) -> Result<&kiln_store::ImageRecord, OpError> {
        self.images.get(reference).ok_or_else(|| {
            OpError::failed(format!(
                "internal error: image {reference} was not resolved"
            ))
        })
    }

    fn tmp_dir(&self) -> PathBuf {
        self.store.root().join("tmp")
    }

    /// The snapshot directories of `layers`, bottom first (extracted from
    /// their blobs when missing).
    async fn snapshots(&self, layers: &[LayerRecord]) -> Result<Vec<PathBuf>, OpError> {
        let store = self.store.clone();
        let layers = layers.to_vec();
        tokio::task::spawn_blocking(move || {
            layers
                .iter()
                .map(|l| store.snapshot(l))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| OpError::failed(format!("snapshot task: {e}")))?
        .map_err(OpError::failed)
    }

    async fn view(&self, fs: &Fs) -> Result<View, OpError> {
        match fs {
            Fs::Layers(layers) => Ok(View::new(self.snapshots(layers).await?)),
            Fs::Context(ctx, visible) => Ok(View::dir(ctx.root()).only(Arc::clone(visible))),
        }
    }

    /// Turn a finished layer directory into a blob and a snapshot.
    async fn commit_layer(&self, dir: PathBuf, ctx: &OpContext) -> Result<LayerRecord, OpError> {
        let store = self.store.clone();
        ctx.cpu(move || -> Result<LayerRecord, kiln_store::StoreError> {
            let opts = CreateOptions {
                source_date_epoch: None,
                overlay_upper: true,
            };
            let layer = store.add_layer_from_dir(&dir, &opts)?;
            store.adopt_snapshot(&layer, &dir)?;
            Ok(layer)
        })
        .await?
        .map_err(OpError::failed)
    }

    async fn file(&self, op: &FileOp, inputs: Vec<Fs>, ctx: &OpContext) -> Result<Fs, OpError> {
        let base_layers: Vec<LayerRecord> = match inputs.first() {
            Some(fs) => fs.layers()?.to_vec(),
            None => Vec::new(),
        };
        let below = if inputs.is_empty() {
            View::default()
        } else {
            View::new(self.snapshots(&base_layers).await?)
        };
        // `--link`: the copy is made on an empty filesystem (names are still
        // those of the image it is stacked on).
        let (base, users) = if op.link {
            (View::default(), Some(below))
        } else {
            (below, None)
        };
        let mut sources = Vec::with_capacity(inputs.len());
        for fs in &inputs {
            let default_owner = match fs {
                Fs::Context(..) => Some(Owner { uid: 0, gid: 0 }),
                Fs::Layers(_) => None,
            };
            sources.push(Source {
                view: self.view(fs).await?,
                default_owner,
            });
        }
        let out = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(self.tmp_dir())
            .map_err(|e| OpError::failed(format!("creating a layer directory: {e}")))?;
        let out_path = out.path().to_path_buf();
        let actions = op.actions.clone();
        if ctx.is_cancelled() {
            return Err(OpError::Cancelled);
        }
        ctx.cpu(move || {
            apply_actions_with_users(&actions, &base, users.as_ref(), &sources, &out_path)
        })
        .await?
        .map_err(OpError::failed)?;
        let dir = out.keep();
        let layer = match self.commit_layer(dir.clone(), ctx).await {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        if dir.exists() {
            // Another build made the same snapshot first.
            let _ = std::fs::remove_dir_all(&dir);
        }
        let mut layers = base_layers;
        layers.push(layer);
        Ok(Fs::Layers(Arc::new(layers)))
    }

    /// A directory holding `selector` of `fs`, for a bind mount.
    async fn materialize(
        &self,
        fs: &Fs,
        selector: &str,
        readonly: bool,
        keep: &mut Vec<tempfile::TempDir>,
    ) -> Result<PathBuf, OpError> {
        let rel = selector.trim_start_matches('/');
        // A read-only mount of an unfiltered context: bind it in place.
        if let Fs::Context(c, _) = fs
            && readonly
            && c.ignore().is_empty()
        {
            let view = View::dir(c.root());
            let resolved = view
                .resolve(Path::new(rel), true)
                .map_err(OpError::failed)?;
            let path = c.root().join(resolved);
            if !path.exists() {
                return Err(OpError::failed(format!(
                    "bind mount source {selector}: no such file or directory in the build context"
                )));
            }
            return Ok(path);
        }
        let view = self.view(fs).await?;
        let dir = tempfile::Builder::new()
            .prefix("mount-")
            .tempdir_in(self.tmp_dir())
            .map_err(|e| OpError::failed(format!("creating a mount directory: {e}")))?;
        let out = dir.path().to_path_buf();
        let is_dir = {
            let resolved = view
                .resolve(Path::new(rel), true)
                .map_err(OpError::failed)?;
            view.lookup(&resolved)
                .map_err(OpError::failed)?
                .is_none_or(|e| e.meta.is_dir())
        };
        let copy = Copy {
            from: 0,
            sources: vec![if rel.is_empty() {
                ".".into()
            } else {
                rel.to_owned()
            }],
            dest: if is_dir { "/".into() } else { "/file".into() },
            follow_symlinks: true,
            dir_contents_only: true,
            create_dest_path: true,
            ..Copy::default()
        };
        let sources = vec![Source {
            view,
            default_owner: None,
        }];
        let actions = vec![FileAction::Copy(copy)];
        let target = out.clone();
        kiln_solver::cpu(move || apply_actions(&actions, &View::default(), &sources, &target))
            .await?
            .map_err(OpError::failed)?;
        keep.push(dir);
        Ok(if is_dir { out } else { out.join("file") })
    }

    /// The directory of a cache mount, created (and seeded) when new, and the
    /// lock that keeps it for this step.
    #[allow(clippy::too_many_arguments)]
    async fn cache_dir(
        &self,
        id: &str,
        sharing: Sharing,
        seed: Option<(&Fs, &str)>,
        mode: u32,
        uid: u32,
        gid: u32,
        keep: &mut Vec<tempfile::TempDir>,
    ) -> Result<(PathBuf, std::fs::File), OpError> {
        let base = self.store.root().join("cache-mounts");
        fs_err::create_dir_all(&base).map_err(OpError::failed)?;
        let hash = hex::encode(&kiln_solver::Key::of_bytes(id.as_bytes()).as_bytes()[..16]);
        let mut n = 0usize;
        loop {
            let name = if n == 0 {
                hash.clone()
            } else {
                format!("{hash}-{n}")
            };
            let dir = base.join(&name);
            let lock_path = base.join(format!("{name}.lock"));
            let lock = fs_err::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(OpError::failed)?
                .into_parts()
                .0;
            let acquired = match sharing {
                Sharing::Shared => {
                    flock(&lock, libc::LOCK_SH | libc::LOCK_NB) || {
                        // A private user holds it exclusively: wait (shared users
                        // never make copies).
                        let l = lock.try_clone().map_err(OpError::failed)?;
                        tokio::task::spawn_blocking(move || flock(&l, libc::LOCK_SH))
                            .await
                            .unwrap_or(false)
                    }
                }
                Sharing::Private => flock(&lock, libc::LOCK_EX | libc::LOCK_NB),
                Sharing::Locked => {
                    let l = lock.try_clone().map_err(OpError::failed)?;
                    tokio::task::spawn_blocking(move || flock(&l, libc::LOCK_EX))
                        .await
                        .unwrap_or(false)
                }
            };
            if !acquired {
                n += 1;
                continue;
            }
            if !dir.is_dir() {
                let tmp = tempfile::Builder::new()
                    .prefix("cache-")
                    .tempdir_in(&base)
                    .map_err(OpError::failed)?;
                if let Some((fs, selector)) = seed {
                    let src = self.materialize(fs, selector, true, keep).await?;
                    let from = View::dir(&src);
                    let actions = vec![FileAction::Copy(Copy {
                        from: 0,
                        sources: vec![".".into()],
                        dest: "/".into(),
                        dir_contents_only: true,
                        create_dest_path: true,
                        ..Copy::default()
                    })];
                    let target = tmp.path().to_path_buf();
                    let sources = vec![Source {
                        view: from,
                        default_owner: None,
                    }];
                    kiln_solver::cpu(move || {
                        apply_actions(&actions, &View::default(), &sources, &target)
                    })
                    .await?
                    .map_err(OpError::failed)?;
                }
                std::os::unix::fs::chown(tmp.path(), Some(uid), Some(gid))
                    .map_err(OpError::failed)?;
                fs_err::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
                    .map_err(OpError::failed)?;
                let made = tmp.keep();
                if std::fs::rename(&made, &dir).is_err() {
                    let _ = std::fs::remove_dir_all(&made);
                }
            }
            return Ok((dir, lock));
        }
    }

    async fn exec(&self, op: &ExecOp, inputs: Vec<Fs>, ctx: &OpContext) -> Result<Fs, OpError> {
        let Some(root) = inputs.first() else {
            return Err(OpError::failed(
                "internal error: RUN without a root filesystem",
            ));
        };
        let base_layers = root.layers()?.to_vec();
        // Setup (snapshots, mount sources) is kiln's own work: it holds a
        // CPU permit, released while the process runs. No lock is held while
        // waiting for the permit (cache-mount locks are taken under it and
        // dropped before the teardown's permit is asked for), so a step
        // waiting on a cache-mount lock under the permit cannot deadlock.
        let setup_permit = ctx.cpu_permit().await?;
        let mut lowers = self.snapshots(&base_layers).await?;
        lowers.reverse();

        let mut keep: Vec<tempfile::TempDir> = Vec::new();
        let mut locks: Vec<std::fs::File> = Vec::new();
        let mut env: Vec<String> = op
            .env
            .iter()
            .chain(op.proxy_env.iter())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut mounts = Vec::new();
        for m in &op.mounts {
            let input = |i: usize| {
                inputs.get(i).ok_or_else(|| {
                    OpError::failed(format!("internal error: mount input {i} is missing"))
                })
            };
            match &m.source {
                MountSource::Input { input: i, selector } => {
                    let fs = input(*i)?;
                    let source = self
                        .materialize(fs, selector, m.readonly, &mut keep)
                        .await?;
                    mounts.push(StepMount::Bind {
                        source,
                        target: m.target.clone(),
                        readonly: m.readonly,
                    });
                }
                MountSource::Cache {
                    id,
                    sharing,
                    from,
                    mode,
                    uid,
                    gid,
                } => {
                    let seed = match from {
                        Some((i, path)) => Some((input(*i)?, path.as_str())),
                        None => None,
                    };
                    let (dir, lock) = self
                        .cache_dir(id, *sharing, seed, *mode, *uid, *gid, &mut keep)
                        .await?;
                    locks.push(lock);
                    mounts.push(StepMount::Cache {
                        dir,
                        target: m.target.clone(),
                    });
                }
                MountSource::Tmpfs { size } => mounts.push(StepMount::Tmpfs {
                    target: m.target.clone(),
                    size: *size,
                }),
                MountSource::Secret {
                    id,
                    env: as_env,
                    required,
                    mode,
                    uid,
                    gid,
                } => {
                    let Some(data) = self.secrets.get(id) else {
                        if *required {
                            return Err(OpError::failed(format!(
                                "secret {id} not found: pass it with `--secret id={id},src=FILE` (or `env=VAR`)"
                            )));
                        }
                        continue;
                    };
                    if let Some(name) = as_env {
                        env.push(format!("{name}={}", String::from_utf8_lossy(data)));
                    }
                    if !m.target.is_empty() {
                        mounts.push(StepMount::Secret(Secret {
                            target: m.target.clone(),
                            data: data.clone(),
                            mode: *mode,
                            uid: *uid,
                            gid: *gid,
                        }));
                    }
                }
            }
        }
        let config = StepConfig {
            argv: op.args.clone(),
            env,
            user: op.user.clone(),
            cwd: op.cwd.clone(),
            network: match op.network {
                Network::None => kiln_runtime::Network::None,
                Network::Default | Network::Host => kiln_runtime::Network::Host,
            },
            mounts,
        };
        drop(setup_permit);
        let mut out = LogWriter {
            ctx: ctx.clone(),
            stream: Stream::Stdout,
        };
        let mut err = LogWriter {
            ctx: ctx.clone(),
            stream: Stream::Stderr,
        };
        let result = tokio::select! {
            r = self.runtime.run_step(&lowers, &config, &mut out, &mut err) => r,
            () = ctx.cancelled() => return Err(OpError::Cancelled),
        };
        drop(locks);
        let result = match result {
            Ok(r) => r,
            Err(kiln_runtime::RuntimeError::Cancelled) => return Err(OpError::Cancelled),
            Err(e) => return Err(OpError::failed(e)),
        };
        let code = result.exit_code();
        if code != 0 {
            return Err(OpError::failed(ExecFailed {
                command: op.args.join(" "),
                exit_code: code,
            }));
        }
        // Teardown (the diff to a layer) is kiln's own work again.
        let _teardown_permit = ctx.cpu_permit().await?;
        let dest = tempfile::Builder::new()
            .prefix("upper-")
            .tempdir_in(self.tmp_dir())
            .map_err(|e| OpError::failed(format!("creating a layer directory: {e}")))?
            .keep();
        let _ = std::fs::remove_dir(&dest);
        let d = dest.clone();
        tokio::task::spawn_blocking(move || result.persist(&d))
            .await
            .map_err(|e| OpError::failed(format!("persist task: {e}")))?
            .map_err(OpError::failed)?;
        let layer = match self.commit_layer(dest.clone(), ctx).await {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dest);
                return Err(e);
            }
        };
        if dest.exists() {
            let _ = std::fs::remove_dir_all(&dest);
        }
        let mut layers = base_layers;
        layers.push(layer);
        Ok(Fs::Layers(Arc::new(layers)))
    }
}

fn flock(file: &std::fs::File, op: libc::c_int) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this process owns.
    unsafe { libc::flock(file.as_raw_fd(), op) == 0 }
}

/// A file downloaded for `ADD URL`, kept for the build.
#[derive(Debug, Clone)]
struct Downloaded {
    path: PathBuf,
    digest: String,
    modified: Option<std::time::SystemTime>,
}

impl KilnExecutor {
    /// The checkout of a git source (fetched once per build; the remote
    /// context cache keeps it across builds). Fetch progress goes to the
    /// step's log.
    async fn git_tree(
        &self,
        key: GitKey,
        ctx: &OpContext,
    ) -> Result<kiln_context::GitTree, OpError> {
        let mut trees = self.git_trees.lock().await;
        if let Some(t) = trees.get(&key) {
            return Ok(t.clone());
        }
        let (url, reference, subdir, keep_git_dir) = key.clone();
        let src = kiln_context::GitSource {
            url,
            reference,
            subdir,
        };
        let log = ctx.clone();
        let opener = kiln_context::Opener::new(self.store.root().join("contexts"))
            .keep_git_dir(keep_git_dir)
            .progress(move |p| {
                if let kiln_context::Progress::Git { step, .. } = p
                    && *step != "ls-remote"
                {
                    log.log(Stream::Stderr, format!("git {step}\n").into_bytes());
                }
            });
        let shown = src.to_string();
        let tree = tokio::select! {
            t = tokio::task::spawn_blocking(move || opener.git_tree(&src)) => t
                .map_err(|e| OpError::failed(format!("internal error: {e}")))?
                .map_err(|e| OpError::failed(format!("ADD {shown}: {e}")))?,
            () = ctx.cancelled() => return Err(OpError::Cancelled),
        };
        trees.insert(key, tree.clone());
        Ok(tree)
    }

    /// Download `url` once per build into the store's tmp dir (verified
    /// against `checksum` when given).
    async fn download(
        &self,
        url: &str,
        checksum: Option<&str>,
        ctx: &OpContext,
    ) -> Result<Downloaded, OpError> {
        use sha2::Digest as _;
        use tokio::io::AsyncWriteExt as _;
        let mut downloads = self.downloads.lock().await;
        if let Some(d) = downloads.get(url) {
            return verify(url, d.clone(), checksum);
        }
        let fail = |what: String| OpError::failed(format!("ADD {url}: {what}"));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(10))
            .connect_timeout(std::time::Duration::from_secs(30))
            // A server that stops sending fails the step instead of
            // hanging the build (not a limit on the whole download).
            .read_timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let mut response = tokio::select! {
            r = client.get(url).send() => r.map_err(|e| fail(e.to_string()))?,
            () = ctx.cancelled() => return Err(OpError::Cancelled),
        };
        if !response.status().is_success() {
            return Err(fail(format!("the server answered {}", response.status())));
        }
        let modified = response
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map(std::time::SystemTime::from);
        let tmp = tempfile::Builder::new()
            .prefix("url-")
            .tempfile_in(self.tmp_dir())
            .map_err(|e| fail(e.to_string()))?;
        let (file, path) = tmp.keep().map_err(|e| fail(e.to_string()))?;
        let mut out = tokio::fs::File::from_std(file);
        let mut hasher = sha2::Sha256::new();
        loop {
            let chunk = tokio::select! {
                c = response.chunk() => c.map_err(|e| if e.is_timeout() {
                    fail("the server sent nothing for 60 s".to_owned())
                } else {
                    fail(e.to_string())
                })?,
                () = ctx.cancelled() => {
                    let _ = std::fs::remove_file(&path);
                    return Err(OpError::Cancelled);
                }
            };
            let Some(chunk) = chunk else { break };
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        out.flush().await.map_err(|e| fail(e.to_string()))?;
        let d = Downloaded {
            path,
            digest: format!("sha256:{}", hex::encode(hasher.finalize())),
            modified,
        };
        downloads.insert(url.to_owned(), d.clone());
        verify(url, d, checksum)
    }
}

fn verify(url: &str, d: Downloaded, checksum: Option<&str>) -> Result<Downloaded, OpError> {
    match checksum {
        Some(want) if want != d.digest => Err(OpError::failed(format!(
            "ADD {url}: checksum mismatch: expected {want}, the download is {}",
            d.digest
        ))),
        _ => Ok(d),
    }
}

impl Drop for KilnExecutor {
    fn drop(&mut self) {
        if let Ok(d) = self.downloads.try_lock() {
            for f in d.values() {
                let _ = std::fs::remove_file(&f.path);
            }
        }
    }
}

/// Step output → progress events, never clipped.
struct LogWriter {
    ctx: OpContext,
    stream: Stream,
}

impl AsyncWrite for LogWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.ctx.log(self.stream, buf.to_vec());
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Executor for KilnExecutor {
    type Op = KilnOp;
    type Output = Fs;

    async fn content_key(
        &self,
        op: &KilnOp,
        ctx: &OpContext,
    ) -> Result<Option<ContentKey>, OpError> {
        match op {
            KilnOp::Source(SourceOp::Image { reference, .. }) => {
                let record = self.image(reference)?;
                Ok(Some(ContentKey {
                    fields: vec![("image".into(), record.manifest.to_string())],
                }))
            }
            KilnOp::Source(SourceOp::Context {
                include, exclude, ..
            }) => {
                let _ = ctx;
                let s = self.select(include, exclude).await?;
                Ok(Some(ContentKey {
                    fields: vec![("context".into(), s.checksum)],
                }))
            }
            KilnOp::Source(SourceOp::Git {
                url,
                reference,
                subdir,
                keep_git_dir,
                checksum,
            }) => {
                let key = (
                    url.clone(),
                    reference.clone(),
                    subdir.clone(),
                    *keep_git_dir,
                );
                let tree = self.git_tree(key, ctx).await?;
                if let Some(sum) = checksum {
                    // The revision is the commit, or `short-REF` when asked by a short commit.
                    let commit = tree.revision.trim_start_matches("short-");
                    if !commit.starts_with(sum.as_str()) {
                        return Err(OpError::failed(format!(
                            "ADD {url}: checksum mismatch: expected commit {sum}, the ref is at {}",
                            commit.trim_end_matches(".keep-git")
                        )));
                    }
                }
                Ok(Some(ContentKey {
                    fields: vec![("git".into(), tree.revision)],
                }))
            }
            KilnOp::Source(SourceOp::Http { url, checksum, .. }) => {
                // With --checksum the key is the checksum (nothing is
                // downloaded until the step runs); else the download's digest.
                let digest = match checksum {
                    Some(c) => c.clone(),
                    None => self.download(url, None, ctx).await?.digest,
                };
                Ok(Some(ContentKey {
                    fields: vec![("url".into(), digest)],
                }))
            }
            _ => Ok(None),
        }
    }

    async fn execute(&self, op: &KilnOp, inputs: Vec<Fs>, ctx: OpContext) -> Result<Fs, OpError> {
        match op {
            KilnOp::Source(SourceOp::Scratch) => Ok(Fs::Layers(Arc::new(Vec::new()))),
            KilnOp::Source(SourceOp::Image { reference, .. }) => {
                let record = self.image(reference)?;
                // Make sure the snapshots exist now, in this step.
                self.snapshots(&record.layers).await?;
                Ok(Fs::Layers(Arc::new(record.layers.clone())))
            }
            KilnOp::Source(SourceOp::Context {
                include, exclude, ..
            }) => {
                let s = self.select(include, exclude).await?;
                Ok(Fs::Context(Arc::clone(&self.context), s.visible()))
            }
            KilnOp::Source(SourceOp::Git {
                url,
                reference,
                subdir,
                keep_git_dir,
                ..
            }) => {
                let key = (
                    url.clone(),
                    reference.clone(),
                    subdir.clone(),
                    *keep_git_dir,
                );
                let tree = self.git_tree(key, &ctx).await?;
                // Every file of the tree is visible (no .dockerignore).
                let files = tree.context.clone();
                let visible = ctx
                    .cpu(
                        move || -> Result<HashSet<PathBuf>, kiln_context::ContextError> {
                            Ok(files.walk()?.into_iter().map(|e| e.rel).collect())
                        },
                    )
                    .await?
                    .map_err(|e| OpError::failed(format!("{url}: {e}")))?;
                Ok(Fs::Context(Arc::new(tree.context), Arc::new(visible)))
            }
            KilnOp::Source(SourceOp::Http {
                url,
                checksum,
                filename,
            }) => {
                let file = self.download(url, checksum.as_deref(), &ctx).await?;
                let dir = tempfile::Builder::new()
                    .prefix("download-")
                    .tempdir_in(self.tmp_dir())
                    .map_err(|e| OpError::failed(format!("creating a download directory: {e}")))?;
                let name = filename.as_deref().unwrap_or("__unnamed__");
                let dest = dir.path().join(name);
                fs_err::copy(&file.path, &dest).map_err(OpError::failed)?;
                // BuildKit's HTTP source: mode 0600, mtime from Last-Modified.
                fs_err::set_permissions(&dest, std::fs::Permissions::from_mode(0o600))
                    .map_err(OpError::failed)?;
                if let Some(t) = file.modified {
                    let f = fs_err::File::options()
                        .write(true)
                        .open(&dest)
                        .map_err(OpError::failed)?;
                    f.file().set_modified(t).map_err(OpError::failed)?;
                }
                let path = dir.keep();
                let permit = ctx.cpu_permit().await;
                let layer = match permit {
                    Ok(_permit) => self.commit_layer(path.clone(), &ctx).await,
                    Err(e) => Err(e),
                };
                let _ = std::fs::remove_dir_all(&path);
                Ok(Fs::Layers(Arc::new(vec![layer?])))
            }
            KilnOp::Exec(exec) => self.exec(exec, inputs, &ctx).await,
            KilnOp::File(file) => self.file(file, inputs, &ctx).await,
            KilnOp::Merge(_) => {
                let mut layers = Vec::new();
                for fs in &inputs {
                    layers.extend(fs.layers()?.iter().cloned());
                }
                Ok(Fs::Layers(Arc::new(layers)))
            }
        }
    }
}

/// The store's cache index as the solver's cache. Only layer stacks are
/// recorded; a build context is never cached (its checksum is in the keys
/// of the steps that read it).
#[derive(Debug, Clone)]
pub struct StoreCache {
    store: Store,
}

impl StoreCache {
    /// A cache over `store`.
    pub fn new(store: Store) -> StoreCache {
        StoreCache { store }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedLayers {
    layers: Vec<LayerRecord>,
}

impl Cache<Fs> for StoreCache {
    fn get(&self, key: &Key) -> Result<Option<Fs>, BoxError> {
        let Some(entry) = self.store.cache_get(&key.to_string())? else {
            return Ok(None);
        };
        let Ok(cached) = serde_json::from_value::<CachedLayers>(entry.metadata) else {
            return Ok(None);
        };
        // Every layer's blob must still be there (a base image may have been
        // removed and pruned); snapshots are re-extracted from blobs.
        if cached
            .layers
            .iter()
            .any(|l| !self.store.has_blob(&l.digest))
        {
            return Ok(None);
        }
        Ok(Some(Fs::Layers(Arc::new(cached.layers))))
    }

    fn put(&self, key: &Key, preimage: &PreImage, value: &Fs) -> Result<(), BoxError> {
        let Fs::Layers(layers) = value else {
            return Ok(());
        };
        let mut entry = Store::new_cache_entry(serde_json::to_string(preimage)?);
        if let Some(top) = layers.last() {
            entry.diff_id = Some(top.diff_id.clone());
            entry.layer_digest = Some(top.digest.clone());
            entry.layer_size = top.size;
        }
        entry.metadata = serde_json::to_value(CachedLayers {
            layers: layers.to_vec(),
        })?;
        self.store.cache_put(&key.to_string(), &entry)?;
        Ok(())
    }

    fn previous(&self, step: &str) -> Result<Option<PreImage>, BoxError> {
        match self.store.step_preimage(step)? {
            Some(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            None => Ok(None),
        }
    }

    fn remember(&self, step: &str, preimage: &PreImage) -> Result<(), BoxError> {
        self.store
            .set_step_preimage(step, &serde_json::to_vec(preimage)?)?;
        Ok(())
    }

    fn remember_all(&self, steps: &[(&str, &PreImage)]) -> Result<(), BoxError> {
        let encoded = steps
            .iter()
            .map(|(step, preimage)| Ok(((*step).to_owned(), serde_json::to_vec(preimage)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        self.store.set_step_preimages(&encoded)?;
        Ok(())
    }
}
