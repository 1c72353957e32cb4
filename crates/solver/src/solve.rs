//! The scheduler: keys every vertex a solve needs, looks them up, and runs
//! the misses in parallel.
//!
//! A solve goes in four passes:
//!
//! 1. **content keys** — for every vertex the targets depend on, ask the
//!    executor which content its key depends on (context checksums, image
//!    digests), all at once;
//! 2. **keys** — in topological order, each vertex's key is the sha256 of
//!    its op's canonical encoding, its inputs' keys and its content key.
//!    Vertices with equal keys are one job: identical ops run once;
//! 3. **lookup** — from the targets down, a key found in the cache ends the
//!    walk (its inputs are not needed at all); a miss needs its inputs;
//! 4. **run** — every miss whose inputs are ready starts at once. Two
//!    bounds apply (see [`SolveOptions`]): kiln's own work holds one of
//!    `cpu` permits while it runs (a [`crate::Op::cpu_bound`] op for its
//!    whole run; an op that waits on a process takes a permit with
//!    [`crate::OpContext::cpu_permit`] only around its own setup and
//!    teardown), and `jobs`, when given, bounds the steps in progress,
//!    processes included. The first failure cancels the token every running
//!    op watches; the scheduler then waits for all of them to stop (so their
//!    processes are killed and mounts undone) before it returns the error.
//!    A result is recorded in the cache only after its op succeeded.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::error::SolveError;
use crate::graph::{Graph, VertexId};
use crate::key::{Key, KeyEncoder, PreImage};
use crate::op::{
    BoxError, ContentKey, Event, EventSink, Executor, Op, OpContext, OpError, discard_events,
};

/// Version of the vertex encoding (op + inputs + content) wrapped around
/// every op's own encoding.
const VERTEX_ENCODING: u32 = 1;

/// How a solve behaves.
///
/// Parallelism has two bounds, like BuildKit's (which runs every ready step
/// at once) but with kiln's own CPU work kept to the cores:
///
/// - `cpu`: kiln's own work (hashing, diffing, tar, compression, copies)
///   holds one of `cpu` permits while it runs, so it never oversubscribes the
///   cores. A RUN step's container process holds none: it is the user's
///   process, usually waiting on I/O or the network.
/// - `jobs`: when `Some(n)`, at most `n` steps are in progress at once,
///   processes included (`--jobs N`); `None` (the default) bounds nothing but
///   the CPU work.
#[derive(Debug, Clone)]
pub struct SolveOptions {
    /// At most this many steps in progress at once, processes included
    /// (`--jobs`; `Some(0)` counts as 1); `None`: no bound beyond `cpu`.
    pub jobs: Option<usize>,
    /// How many ops may do kiln's own CPU work at once (at least 1; default:
    /// the number of cores).
    pub cpu: usize,
    /// Look nothing up (`--no-cache`); results are still recorded.
    pub no_cache: bool,
    /// Send an [`Event::Missed`] with the changed inputs for every miss.
    pub explain: bool,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            jobs: None,
            cpu: default_jobs(),
            no_cache: false,
            explain: false,
        }
    }
}

/// The number of cores: the default bound on kiln's own CPU work
/// ([`SolveOptions::cpu`]).
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// What a solve produced.
#[derive(Debug)]
pub struct Solution<T> {
    /// The output of each target.
    pub outputs: HashMap<VertexId, T>,
    /// The key of every vertex the targets depend on.
    pub keys: HashMap<VertexId, Key>,
    /// The pre-image of every such key.
    pub preimages: HashMap<VertexId, PreImage>,
    /// How many ops ran (identical ones counted once).
    pub executed: usize,
    /// How many keys were found in the cache.
    pub cached: usize,
}

impl<T> Solution<T> {
    /// The output of one target.
    pub fn output(&self, target: VertexId) -> Option<&T> {
        self.outputs.get(&target)
    }
}

/// Runs graphs of `E::Op` with one executor and one cache.
pub struct Solver<E: Executor> {
    executor: Arc<E>,
    cache: Arc<dyn Cache<E::Output>>,
    events: EventSink,
    options: SolveOptions,
    cancel: CancellationToken,
}

impl<E: Executor> std::fmt::Debug for Solver<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Solver")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// One job: all the vertices sharing a key.
struct Job {
    /// The first vertex with this key (topological order): its inputs are
    /// the job's inputs.
    rep: VertexId,
    members: Vec<VertexId>,
}

enum TaskError {
    Op(OpError),
    Cache(BoxError),
    /// Cancelled while waiting for a CPU permit: the op never started.
    NotStarted,
}

type TaskResult<T> = (Key, Duration, Result<T, TaskError>);

impl<E: Executor> Solver<E> {
    /// A solver with default options and no event sink.
    pub fn new(executor: Arc<E>, cache: Arc<dyn Cache<E::Output>>) -> Solver<E> {
        Solver {
            executor,
            cache,
            events: discard_events(),
            options: SolveOptions::default(),
            cancel: CancellationToken::new(),
        }
    }

    /// Set the options.
    #[must_use]
    pub fn options(mut self, options: SolveOptions) -> Solver<E> {
        self.options = options;
        self
    }

    /// Send events to `sink`.
    #[must_use]
    pub fn events(mut self, sink: EventSink) -> Solver<E> {
        self.events = sink;
        self
    }

    /// Cancel solves when `token` is cancelled (Ctrl-C). A cancelled solve
    /// returns [`SolveError::Cancelled`] after every running op stopped.
    #[must_use]
    pub fn cancel_token(mut self, token: CancellationToken) -> Solver<E> {
        self.cancel = token;
        self
    }

    fn emit(&self, event: Event) {
        (self.events)(event);
    }

    fn ctx(
        &self,
        graph: &Graph<E::Op>,
        v: VertexId,
        cancel: &CancellationToken,
        cpu: &Arc<Semaphore>,
    ) -> OpContext {
        OpContext {
            vertex: v,
            name: graph.vertex(v).name.as_str().into(),
            cancel: cancel.clone(),
            events: self.events.clone(),
            key: None,
            cpu: Arc::clone(cpu),
        }
    }

    /// Produce the outputs of `targets`, running what the cache lacks.
    pub async fn solve(
        &self,
        graph: &Graph<E::Op>,
        targets: &[VertexId],
    ) -> Result<Solution<E::Output>, SolveError> {
        for &t in targets {
            if t.index() >= graph.len() {
                return Err(SolveError::UnknownVertex { vertex: t });
            }
        }
        // A child token: a failure cancels this solve's ops, never the
        // caller's token.
        let cancel = self.cancel.child_token();
        let reach = graph.reachable(targets);
        let cpu = Arc::new(Semaphore::new(self.options.cpu.max(1)));

        let contents = self.content_keys(graph, &reach, &cancel, &cpu).await?;
        let (keys, preimages, forced) = self.keys(graph, &reach, &contents);

        // Jobs: one per distinct key.
        let mut jobs: HashMap<Key, Job> = HashMap::new();
        for &v in &reach {
            jobs.entry(keys[&v])
                .or_insert_with(|| Job {
                    rep: v,
                    members: Vec::new(),
                })
                .members
                .push(v);
        }

        let (mut results, misses) =
            self.lookup(graph, targets, &keys, &preimages, &forced, &jobs)?;
        let cached = results.len();
        let executed = misses.len();

        let run = self
            .run(
                graph,
                &keys,
                &preimages,
                &jobs,
                &misses,
                &mut results,
                &cancel,
                &cpu,
            )
            .await;

        // Remember every known step's pre-image for the next `--explain`,
        // failed build or not (steps that did not finish are left alone).
        let known: Vec<(&str, &PreImage)> = reach
            .iter()
            .filter(|v| results.contains_key(&keys[v]))
            .filter_map(|v| {
                let step = graph.vertex(*v).step_id.as_deref()?;
                Some((step, &preimages[v]))
            })
            .collect();
        self.cache
            .remember_all(&known)
            .map_err(|source| SolveError::Cache { source })?;
        run?;

        let mut outputs = HashMap::new();
        for &t in targets {
            if let Some(out) = results.get(&keys[&t]) {
                outputs.insert(t, out.clone());
            }
        }
        Ok(Solution {
            outputs,
            keys,
            preimages,
            executed,
            cached,
        })
    }

    /// Pass 1: every vertex's content key, all at once.
    async fn content_keys(
        &self,
        graph: &Graph<E::Op>,
        reach: &[VertexId],
        cancel: &CancellationToken,
        cpu: &Arc<Semaphore>,
    ) -> Result<HashMap<VertexId, ContentKey>, SolveError> {
        let mut set = JoinSet::new();
        for &v in reach {
            let executor = Arc::clone(&self.executor);
            let op = Arc::clone(&graph.vertex(v).op);
            let ctx = self.ctx(graph, v, cancel, cpu);
            set.spawn(async move { (v, executor.content_key(&op, &ctx).await) });
        }
        let mut out = HashMap::new();
        let mut first_error = None;
        while let Some(joined) = set.join_next().await {
            let (v, result) = match joined {
                Ok(pair) => pair,
                Err(join) => {
                    cancel.cancel();
                    first_error.get_or_insert(SolveError::Cache {
                        source: format!("a content-key task failed: {join}").into(),
                    });
                    continue;
                }
            };
            match result {
                Ok(Some(content)) => {
                    out.insert(v, content);
                }
                Ok(None) => {}
                Err(OpError::Cancelled) => {
                    first_error.get_or_insert(SolveError::Cancelled);
                }
                Err(OpError::Failed(source)) => {
                    cancel.cancel();
                    first_error.get_or_insert(SolveError::ContentKey {
                        vertex: v,
                        name: graph.vertex(v).name.clone(),
                        source,
                    });
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None if self.cancel.is_cancelled() => Err(SolveError::Cancelled),
            None => Ok(out),
        }
    }

    /// Pass 2: keys in topological order, and which vertices bypass the cache.
    #[allow(clippy::type_complexity)]
    fn keys(
        &self,
        graph: &Graph<E::Op>,
        reach: &[VertexId],
        contents: &HashMap<VertexId, ContentKey>,
    ) -> (
        HashMap<VertexId, Key>,
        HashMap<VertexId, PreImage>,
        HashSet<VertexId>,
    ) {
        let mut keys = HashMap::with_capacity(reach.len());
        let mut preimages = HashMap::with_capacity(reach.len());
        let mut forced = HashSet::new();
        for &v in reach {
            let vertex = graph.vertex(v);
            let mut enc = KeyEncoder::new();
            enc.tag("kiln.vertex", VERTEX_ENCODING);
            enc.value("op", &*vertex.op);
            for (i, input) in vertex.inputs.iter().enumerate() {
                enc.key(&format!("input[{i}]"), &keys[input]);
            }
            if let Some(content) = contents.get(&v) {
                enc.nested("content", |enc| {
                    for (name, value) in &content.fields {
                        enc.str(name, value);
                    }
                });
            }
            let (key, pre) = enc.finish();
            keys.insert(v, key);
            preimages.insert(v, pre);
            // Bypassing the cache for a vertex bypasses it for everything
            // built on it: its output may differ from the recorded one.
            if self.options.no_cache
                || vertex.no_cache
                || vertex.inputs.iter().any(|i| forced.contains(i))
            {
                forced.insert(v);
            }
        }
        (keys, preimages, forced)
    }

    /// Pass 3: from the targets down, hits end the walk; returns the hits'
    /// outputs and the set of keys to run.
    #[allow(clippy::type_complexity)]
    fn lookup(
        &self,
        graph: &Graph<E::Op>,
        targets: &[VertexId],
        keys: &HashMap<VertexId, Key>,
        preimages: &HashMap<VertexId, PreImage>,
        forced: &HashSet<VertexId>,
        jobs: &HashMap<Key, Job>,
    ) -> Result<(HashMap<Key, E::Output>, HashSet<Key>), SolveError> {
        let mut results = HashMap::new();
        let mut misses = HashSet::new();
        let mut stack: Vec<Key> = targets.iter().map(|t| keys[t]).collect();
        let mut seen = HashSet::new();
        while let Some(key) = stack.pop() {
            if !seen.insert(key) {
                continue;
            }
            let job = &jobs[&key];
            let bypass = job.members.iter().any(|m| forced.contains(m));
            let hit = if bypass {
                None
            } else {
                self.cache
                    .get(&key)
                    .map_err(|source| SolveError::Cache { source })?
            };
            if let Some(output) = hit {
                for &m in &job.members {
                    self.emit(Event::Cached {
                        vertex: m,
                        name: graph.vertex(m).name.clone(),
                        key,
                    });
                }
                results.insert(key, output);
                continue;
            }
            if self.options.explain {
                for &m in &job.members {
                    self.explain(graph, m, &preimages[&m], bypass)?;
                }
            }
            misses.insert(key);
            for input in &graph.vertex(job.rep).inputs {
                stack.push(keys[input]);
            }
        }
        Ok((results, misses))
    }

    fn explain(
        &self,
        graph: &Graph<E::Op>,
        v: VertexId,
        preimage: &PreImage,
        bypass: bool,
    ) -> Result<(), SolveError> {
        let vertex = graph.vertex(v);
        let previous = match (&vertex.step_id, bypass) {
            (Some(step), false) => self
                .cache
                .previous(step)
                .map_err(|source| SolveError::Cache { source })?,
            _ => None,
        };
        let (changes, known) = match &previous {
            Some(before) => (preimage.diff(before), true),
            None => (Vec::new(), false),
        };
        self.emit(Event::Missed {
            vertex: v,
            name: vertex.name.clone(),
            changes,
            known,
        });
        Ok(())
    }

    /// Pass 4: run the misses, inputs first, every ready one at once (at
    /// most `jobs` when given; CPU permits bound the rest).
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        graph: &Graph<E::Op>,
        keys: &HashMap<VertexId, Key>,
        preimages: &HashMap<VertexId, PreImage>,
        jobs: &HashMap<Key, Job>,
        misses: &HashSet<Key>,
        results: &mut HashMap<Key, E::Output>,
        cancel: &CancellationToken,
        cpu: &Arc<Semaphore>,
    ) -> Result<(), SolveError> {
        // Dependencies among misses (hits are already in `results`).
        let mut pending: HashMap<Key, usize> = HashMap::new();
        let mut consumers: HashMap<Key, Vec<Key>> = HashMap::new();
        let mut ready: Vec<Key> = Vec::new();
        // Deterministic start order: topological by representative vertex.
        let mut order: Vec<&Key> = misses.iter().collect();
        order.sort_by_key(|k| jobs[*k].rep);
        for &key in &order {
            let rep = graph.vertex(jobs[key].rep);
            let deps: HashSet<Key> = rep
                .inputs
                .iter()
                .map(|i| keys[i])
                .filter(|k| misses.contains(k))
                .collect();
            for dep in &deps {
                consumers.entry(*dep).or_default().push(*key);
            }
            if deps.is_empty() {
                ready.push(*key);
            }
            pending.insert(*key, deps.len());
        }
        ready.reverse(); // pop() takes the earliest first

        let limit = self.options.jobs.map_or(usize::MAX, |j| j.max(1));
        let mut running: JoinSet<TaskResult<E::Output>> = JoinSet::new();
        let mut running_keys: HashMap<tokio::task::Id, Key> = HashMap::new();
        let mut first_error: Option<SolveError> = None;
        let mut external_cancel = false;

        loop {
            while running.len() < limit && !cancel.is_cancelled() {
                let Some(key) = ready.pop() else { break };
                let id = self.spawn(
                    graph,
                    keys,
                    preimages,
                    &jobs[&key],
                    key,
                    results,
                    cancel,
                    cpu,
                    &mut running,
                );
                running_keys.insert(id, key);
            }
            if running.is_empty() {
                break;
            }
            let joined = tokio::select! {
                joined = running.join_next_with_id() => joined,
                () = self.cancel.cancelled(), if !external_cancel => {
                    external_cancel = true;
                    cancel.cancel();
                    continue;
                }
            };
            let Some(joined) = joined else { break };
            let (key, elapsed, result) = match joined {
                Ok((_, triple)) => triple,
                Err(join) => {
                    // The op's task panicked: a bug in an executor, reported
                    // as that op's failure.
                    let key = running_keys[&join.id()];
                    (
                        key,
                        Duration::ZERO,
                        Err(TaskError::Op(OpError::failed(format!(
                            "internal error: {join}"
                        )))),
                    )
                }
            };
            let job = &jobs[&key];
            match result {
                Ok(output) => {
                    for &m in &job.members {
                        self.emit(Event::Finished { vertex: m, elapsed });
                    }
                    results.insert(key, output);
                    for consumer in consumers.get(&key).into_iter().flatten() {
                        if let Some(n) = pending.get_mut(consumer) {
                            *n -= 1;
                            if *n == 0 {
                                ready.push(*consumer);
                            }
                        }
                    }
                }
                Err(TaskError::Op(OpError::Cancelled)) => {
                    for &m in &job.members {
                        self.emit(Event::Cancelled { vertex: m });
                    }
                }
                Err(TaskError::Op(OpError::Failed(source))) => {
                    cancel.cancel();
                    for &m in &job.members {
                        self.emit(Event::Failed {
                            vertex: m,
                            elapsed,
                            message: source.to_string(),
                        });
                    }
                    first_error.get_or_insert(SolveError::Op {
                        vertex: job.rep,
                        name: graph.vertex(job.rep).name.clone(),
                        source,
                    });
                }
                Err(TaskError::Cache(source)) => {
                    cancel.cancel();
                    first_error.get_or_insert(SolveError::Cache { source });
                }
                Err(TaskError::NotStarted) => {}
            }
        }
        match first_error {
            Some(err) => Err(err),
            None if external_cancel || self.cancel.is_cancelled() => Err(SolveError::Cancelled),
            None => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        graph: &Graph<E::Op>,
        keys: &HashMap<VertexId, Key>,
        preimages: &HashMap<VertexId, PreImage>,
        job: &Job,
        key: Key,
        results: &HashMap<Key, E::Output>,
        cancel: &CancellationToken,
        cpu: &Arc<Semaphore>,
        running: &mut JoinSet<TaskResult<E::Output>>,
    ) -> tokio::task::Id {
        let vertex = graph.vertex(job.rep);
        let inputs: Vec<E::Output> = vertex
            .inputs
            .iter()
            .map(|i| results[&keys[i]].clone())
            .collect();
        let started: Vec<Event> = job
            .members
            .iter()
            .map(|&m| Event::Started {
                vertex: m,
                name: graph.vertex(m).name.clone(),
            })
            .collect();
        let mut ctx = self.ctx(graph, job.rep, cancel, cpu);
        ctx.key = Some(key);
        let executor = Arc::clone(&self.executor);
        let cache = Arc::clone(&self.cache);
        let op = Arc::clone(&vertex.op);
        let preimage = preimages[&job.rep].clone();
        let events = self.events.clone();
        let handle = running.spawn(async move {
            // Kiln's own work holds a CPU permit for the whole op; an op
            // that waits on a process takes one around its own work only.
            // A step is "started" once it holds what it needs to run.
            let _permit = if op.cpu_bound() {
                match ctx.cpu_permit().await {
                    // The permit may come from an op that just failed (it
                    // cancels before it lets go of the permit).
                    Ok(_) if ctx.is_cancelled() => {
                        return (key, Duration::ZERO, Err(TaskError::NotStarted));
                    }
                    Ok(p) => Some(p),
                    Err(_) => return (key, Duration::ZERO, Err(TaskError::NotStarted)),
                }
            } else {
                None
            };
            for event in started {
                events(event);
            }
            let start = Instant::now();
            let token = ctx.cancel_token().clone();
            let result = executor.execute(&op, inputs, ctx).await;
            let elapsed = start.elapsed();
            let result = match result {
                Ok(output) => match cache.put(&key, &preimage, &output) {
                    Ok(()) => Ok(output),
                    Err(e) => Err(TaskError::Cache(e)),
                },
                Err(e) => Err(TaskError::Op(e)),
            };
            if let Err(TaskError::Op(OpError::Failed(_)) | TaskError::Cache(_)) = &result {
                // Cancel now, while this op still holds its CPU permit, so
                // that no op waiting for it starts after the failure.
                token.cancel();
            }
            (key, elapsed, result)
        });
        handle.id()
    }
}
