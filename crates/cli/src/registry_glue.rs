//! What `pull`, `push`, `login` and `logout` share: registry options from
//! flags and environment, the store as the registry client's blob sink and
//! source, and the rendering of transfer progress.

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_oci::Digest;
use kiln_oci::{Compression, Reference};
use kiln_registry::credentials::{DockerConfig, default_config_dir};
use kiln_registry::{
    BlobSink, BlobSource, BlobWrite, BoxError, ClientOptions, Event, Platform, Progress,
    PulledImage, Pushed, Registry,
};
use kiln_store::{ImageRecord, Store};

use crate::cli::GlobalArgs;

/// Flags every registry command takes.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Allow plain HTTP and unverified TLS for this registry (HOST[:PORT];
    /// repeatable; loopback registries always are; also
    /// `insecure-registries` in ROOT/registries.json)
    #[arg(
        long = "insecure-registry",
        value_name = "HOST",
        env = "KILN_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
}

impl RegistryArgs {
    /// Client options for `host`: insecure hosts, `certs.d` directories
    /// (`ROOT/certs.d`, then docker's), and the user's credentials.
    pub fn options(&self, global: &GlobalArgs, host: &str) -> Result<ClientOptions> {
        let config = DockerConfig::load(&default_config_dir())?;
        let credential = config
            .get(host)
            .with_context(|| format!("reading credentials for {host}"))?;
        let mut insecure = self.insecure.clone();
        insecure.extend(configured_insecure(global)?);
        Ok(ClientOptions {
            insecure,
            certs_dirs: vec![
                global.root_dir().join("certs.d"),
                PathBuf::from("/etc/docker/certs.d"),
            ],
            credential,
            ..ClientOptions::default()
        })
    }
}

/// `ROOT/registries.json`'s `insecure-registries` list (docker's
/// `daemon.json` key), if the file exists.
fn configured_insecure(global: &GlobalArgs) -> Result<Vec<String>> {
    let path = global.root_dir().join("registries.json");
    let bytes = match fs_err::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    match v.get("insecure-registries") {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .map(|h| {
                h.as_str().map(str::to_owned).with_context(|| {
                    format!(
                        "{}: `insecure-registries` must list strings",
                        path.display()
                    )
                })
            })
            .collect(),
        Some(_) => anyhow::bail!(
            "{}: `insecure-registries` must be a list of HOST[:PORT] strings",
            path.display()
        ),
    }
}

/// Pull `reference` into the store and record it (tagged with the
/// reference's tag). Runs its own async runtime: call it from plain threads.
pub fn pull_to_store(
    global: &GlobalArgs,
    args: &RegistryArgs,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    render: &Arc<Render>,
) -> Result<(PulledImage, ImageRecord)> {
    let registry = Registry::new(
        reference.domain(),
        args.options(global, reference.domain())?,
    )?;
    let sink = Arc::new(StoreSink(store.clone()));
    let pulled = runtime()?.block_on(registry.pull(reference, platform, sink, &render.progress()));
    render.clear();
    let pulled = pulled.with_context(|| format!("pulling {}", reference.familiar()))?;
    // A digest reference names no tag to record; the image is kept untagged.
    let tags: Vec<Reference> = match reference.tag() {
        Some(t) => vec![reference.with_tag(t)?],
        None => Vec::new(),
    };
    let record = store
        .insert_manifest(&pulled.manifest.digest, &tags)
        .with_context(|| format!("recording {} in the store", reference.familiar()))?;
    Ok((pulled, record))
}

/// Push an image of the store as `target` (uncompressed layers compressed
/// with `compression`, once, cached).
pub fn push_from_store(
    global: &GlobalArgs,
    args: &RegistryArgs,
    store: &Store,
    record: &ImageRecord,
    target: &Reference,
    compression: Compression,
    render: &Arc<Render>,
) -> Result<Pushed> {
    let image = crate::commands::push::push_image(store, record, target, compression)?;
    let registry = Registry::new(target.domain(), args.options(global, target.domain())?)?;
    let source = Arc::new(StoreSink(store.clone()));
    let pushed = runtime()?.block_on(registry.push(target, &image, source, &render.progress()));
    render.clear();
    pushed.with_context(|| format!("pushing {}", target.familiar()))
}

/// The build's base-image puller: the store's registry client, on a thread
/// of its own (the build runs inside an async runtime).
#[derive(Debug)]
pub struct BuildPuller {
    pub global: GlobalArgs,
    pub args: RegistryArgs,
    pub store: Store,
    pub quiet: bool,
}

impl kiln_build::BasePuller for BuildPuller {
    fn pull(
        &self,
        reference: &Reference,
    ) -> Result<ImageRecord, Box<dyn std::error::Error + Send + Sync>> {
        let render = Render::plain(self.quiet, "Pull");
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                pull_to_store(
                    &self.global,
                    &self.args,
                    &self.store,
                    reference,
                    &Platform::host(),
                    &render,
                )
            })
            .join()
        });
        match result {
            Ok(Ok((_, record))) => Ok(record),
            Ok(Err(e)) => Err(format!("{e:#}").into()),
            Err(_) => Err("the pull thread panicked".into()),
        }
    }
}

/// A runtime for one command's network work.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The store as a sink of pulled blobs.
pub struct StoreSink(pub Store);

struct StoreWrite(kiln_store::BlobWriter);

impl Write for StoreWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl BlobWrite for StoreWrite {
    fn commit(self: Box<Self>, expected: &Digest) -> Result<(), BoxError> {
        self.0.commit(Some(expected))?;
        Ok(())
    }
}

impl BlobSink for StoreSink {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.0.has_blob(digest)
    }
    fn writer(&self) -> Result<Box<dyn BlobWrite>, BoxError> {
        Ok(Box::new(StoreWrite(self.0.blob_writer()?)))
    }
}

impl BlobSource for StoreSink {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BoxError> {
        Ok(Box::new(self.0.read_blob(digest)?))
    }
}

/// Renders transfer events: a bar per blob on a terminal, docker-like
/// lines otherwise, nothing with `quiet`.
pub struct Render {
    tty: Option<MultiProgress>,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    quiet: bool,
    verb: &'static str,
}

impl Render {
    /// `verb`: `Pull` or `Push` (`Pull complete`, `Pushed`).
    pub fn new(quiet: bool, verb: &'static str) -> Arc<Self> {
        Self::make(quiet, verb, std::io::stderr().is_terminal())
    }

    /// Lines only (inside a build, whose own view owns the terminal).
    pub fn plain(quiet: bool, verb: &'static str) -> Arc<Self> {
        Self::make(quiet, verb, false)
    }

    fn make(quiet: bool, verb: &'static str, bars: bool) -> Arc<Self> {
        let tty =
            (!quiet && bars).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Arc::new(Self {
            tty,
            bars: Mutex::new(HashMap::new()),
            quiet,
            verb,
        })
    }

    /// The progress callback for the registry client.
    pub fn progress(self: &Arc<Self>) -> Progress {
        let me = self.clone();
        Arc::new(move |e| me.handle(&e))
    }

    fn line(&self, s: &str) {
        if self.quiet {
            return;
        }
        match &self.tty {
            Some(m) => {
                let _ = m.println(s);
            }
            None => eprintln!("{s}"),
        }
    }

    fn handle(&self, e: &Event) {
        if self.quiet {
            return;
        }
        let done_word = if self.verb == "Pull" {
            "Pull complete"
        } else {
            "Pushed"
        };
        match e {
            Event::BlobExists { digest, .. } => {
                let what = if self.verb == "Pull" {
                    "Already exists"
                } else {
                    "Layer already exists"
                };
                self.line(&format!("{}: {what}", digest.short()));
            }
            Event::BlobMounted { digest, from } => {
                self.line(&format!("{}: Mounted from {from}", digest.short()));
            }
            Event::BlobStart { digest, size } => {
                if let Some(m) = &self.tty {
                    let bar = m.add(ProgressBar::new(*size));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix}: {msg} [{bar:30}] {bytes}/{total_bytes}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(digest.short().to_owned());
                    bar.set_message(if self.verb == "Pull" {
                        "Downloading"
                    } else {
                        "Pushing"
                    });
                    if let Ok(mut bars) = self.bars.lock() {
                        bars.insert(digest.clone(), bar);
                    }
                }
            }
            Event::BlobProgress { digest, done, .. } => {
                if let Ok(bars) = self.bars.lock()
                    && let Some(bar) = bars.get(digest)
                {
                    bar.set_position(*done);
                }
            }
            Event::BlobDone { digest, .. } => {
                let bar = self.bars.lock().ok().and_then(|mut b| b.remove(digest));
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                self.line(&format!("{}: {done_word}", digest.short()));
            }
            Event::Retry {
                what,
                attempt,
                reason,
            } => {
                self.line(&format!(
                    "{what}: attempt {attempt} failed ({reason}); retrying"
                ));
            }
            // Resolved, ManifestPushed: the command prints the outcome.
            _ => {}
        }
    }

    /// Remove bars left by a failed transfer.
    pub fn clear(&self) {
        if let Ok(mut bars) = self.bars.lock() {
            for (_, bar) in bars.drain() {
                bar.finish_and_clear();
            }
        }
    }
}
