//! The scheduler: parallelism, dedupe, caching, cancellation, explanations.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_solver::{
    CancellationToken, Event, Graph, MemoryCache, SolveError, SolveOptions, Solver, VertexId,
    VertexOptions,
};

use crate::fake::{FakeExecutor, FakeOp, compute};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `jobs` steps at once, with CPU permits to spare (so `jobs` is the bound).
fn opts(jobs: usize) -> SolveOptions {
    SolveOptions {
        jobs: Some(jobs),
        cpu: 16,
        ..SolveOptions::default()
    }
}

fn recorder() -> (Arc<Mutex<Vec<Event>>>, kiln_solver::EventSink) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink_events = Arc::clone(&events);
    (
        events,
        Arc::new(move |e| sink_events.lock().unwrap().push(e)),
    )
}

/// Independent vertices `op(i)` named `name(i)`, one per id.
fn leaves(
    g: &mut Graph<FakeOp>,
    ids: std::ops::Range<u64>,
    op: fn(u64, u64) -> FakeOp,
    delay_ms: u64,
    name: impl Fn(u64) -> String,
) -> Vec<VertexId> {
    ids.map(|i| g.add(op(i, delay_ms), &[], VertexOptions::named(name(i))))
        .collect()
}

/// A solver over `exec` with an empty cache of its own.
fn fresh(exec: &Arc<FakeExecutor>) -> Solver<FakeExecutor> {
    Solver::new(exec.clone(), Arc::new(MemoryCache::new()))
}

#[test]
fn independent_ops_run_at_once_up_to_jobs() {
    rt().block_on(async {
        let mut g = Graph::new();
        let leaves = leaves(&mut g, 0..8, FakeOp::new, 40, |i| format!("leaf {i}"));
        let top = g.add(FakeOp::new(100, 0), &leaves, VertexOptions::named("top"));
        let exec = Arc::new(FakeExecutor::default());
        let solver = fresh(&exec).options(opts(3));
        let solution = solver.solve(&g, &[top]).await.unwrap();
        assert_eq!(solution.executed, 9);
        assert_eq!(exec.max_running.load(Ordering::SeqCst), 3);
        let leaf_values: Vec<u64> = (0..8).map(|i| compute(i, &[])).collect();
        assert_eq!(solution.output(top), Some(&compute(100, &leaf_values)));
    });
}

#[test]
fn identical_ops_run_once() {
    rt().block_on(async {
        let mut g = Graph::new();
        let base = g.add(FakeOp::new(1, 10), &[], VertexOptions::named("base"));
        // Two stages doing the same thing on the same input.
        let a = g.add(
            FakeOp::new(2, 30),
            &[base],
            VertexOptions::named("stage a: RUN make"),
        );
        let b = g.add(
            FakeOp::new(2, 30),
            &[base],
            VertexOptions::named("stage b: RUN make"),
        );
        let top = g.add(FakeOp::new(3, 0), &[a, b], VertexOptions::named("merge"));
        let exec = Arc::new(FakeExecutor::default());
        let solver = fresh(&exec).options(opts(4));
        let solution = solver.solve(&g, &[top, a, b]).await.unwrap();
        assert_eq!(exec.runs_of(2), 1);
        assert_eq!(solution.executed, 3);
        assert_eq!(solution.keys[&a], solution.keys[&b]);
        assert_eq!(solution.output(a), solution.output(b));
    });
}

#[test]
fn first_failure_cancels_running_siblings_and_records_nothing_for_them() {
    rt().block_on(async {
        let mut g = Graph::new();
        let slow1 = g.add(FakeOp::new(1, 10_000), &[], VertexOptions::named("slow 1"));
        let slow2 = g.add(FakeOp::new(2, 10_000), &[], VertexOptions::named("slow 2"));
        let bad = g.add(FakeOp::failing(3, 50), &[], VertexOptions::named("bad"));
        let after = g.add(
            FakeOp::new(4, 0),
            &[slow1, slow2, bad],
            VertexOptions::named("after"),
        );
        let exec = Arc::new(FakeExecutor::default());
        let cache = Arc::new(MemoryCache::new());
        let (events, sink) = recorder();
        let solver = Solver::new(exec.clone(), cache.clone())
            .options(opts(4))
            .events(sink);
        let start = Instant::now();
        let err = solver.solve(&g, &[after]).await.unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "siblings were not cancelled"
        );
        match &err {
            SolveError::Op {
                vertex,
                name,
                source,
            } => {
                assert_eq!(*vertex, bad);
                assert_eq!(name, "bad");
                assert_eq!(source.to_string(), "op 3 failed on purpose");
            }
            other => panic!("unexpected error {other:?}"),
        }
        // Every sibling stopped before solve returned; none is still running.
        assert_eq!(exec.running.load(Ordering::SeqCst), 0);
        let mut cancelled = exec.cancelled.lock().unwrap().clone();
        cancelled.sort_unstable();
        assert_eq!(cancelled, vec![1, 2]);
        assert_eq!(exec.runs_of(4), 0, "a consumer of the failure ran");
        assert!(cache.is_empty(), "a failed or cancelled op was recorded");
        let events = events.lock().unwrap();
        let cancelled_events = events
            .iter()
            .filter(|e| matches!(e, Event::Cancelled { .. }))
            .count();
        assert_eq!(cancelled_events, 2);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Failed { vertex, .. } if *vertex == bad))
        );
    });
}

#[test]
fn failure_stops_queued_ops_from_starting() {
    rt().block_on(async {
        let mut g = Graph::new();
        let bad = g.add(FakeOp::failing(1, 20), &[], VertexOptions::named("bad"));
        let queued = leaves(&mut g, 10..20, FakeOp::new, 20, |i| format!("q{i}"));
        let mut targets = vec![bad];
        targets.extend(queued);
        let exec = Arc::new(FakeExecutor::default());
        let solver = fresh(&exec).options(opts(1));
        assert!(solver.solve(&g, &targets).await.is_err());
        assert_eq!(
            *exec.runs.lock().unwrap(),
            [1],
            "ops started after the first failure"
        );
    });
}

fn unbounded(cpu: usize) -> SolveOptions {
    SolveOptions {
        jobs: None,
        cpu,
        ..SolveOptions::default()
    }
}

#[test]
fn run_processes_are_not_bounded_by_the_cpu_permits() {
    rt().block_on(async {
        // Six RUN-like ops on one CPU permit: each process waits until all
        // six run at once, which only happens if the permit is not held
        // while they run (like BuildKit's four 2 s sleeps in parallel).
        let mut g = Graph::new();
        let procs = leaves(&mut g, 0..6, FakeOp::process, 5, |i| {
            format!("RUN sleep {i}")
        });
        let exec = Arc::new(FakeExecutor {
            process_barrier: Some(Arc::new(tokio::sync::Barrier::new(6))),
            ..FakeExecutor::default()
        });
        let solver = fresh(&exec).options(unbounded(1));
        let solution = tokio::time::timeout(Duration::from_secs(60), solver.solve(&g, &procs))
            .await
            .expect("the processes never all ran at once: a CPU permit bounds them")
            .unwrap();
        assert_eq!(solution.executed, 6);
        assert_eq!(exec.max_processes.load(Ordering::SeqCst), 6);
        // Their setups and teardowns shared the one permit.
        assert_eq!(exec.max_cpu_work.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn own_cpu_work_is_bounded_by_the_cpu_permits_without_jobs() {
    rt().block_on(async {
        let mut g = Graph::new();
        let mut leaves = leaves(&mut g, 0..6, FakeOp::new, 30, |i| format!("COPY {i}"));
        leaves.extend((10..14).map(|i| {
            g.add(
                FakeOp::process(i, 30),
                &[],
                VertexOptions::named(format!("RUN {i}")),
            )
        }));
        let top = g.add(FakeOp::new(100, 0), &leaves, VertexOptions::named("top"));
        let exec = Arc::new(FakeExecutor::default());
        let solver = fresh(&exec).options(unbounded(2));
        let solution = solver.solve(&g, &[top]).await.unwrap();
        assert_eq!(solution.executed, 11);
        assert_eq!(exec.max_cpu_work.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn jobs_bounds_the_steps_in_progress_processes_included() {
    rt().block_on(async {
        let mut g = Graph::new();
        let procs = leaves(&mut g, 0..6, FakeOp::process, 30, |i| format!("RUN {i}"));
        let exec = Arc::new(FakeExecutor::default());
        let solver = fresh(&exec).options(SolveOptions {
            jobs: Some(2),
            cpu: 4,
            ..SolveOptions::default()
        });
        solver.solve(&g, &procs).await.unwrap();
        assert_eq!(exec.total_runs(), 6);
        assert_eq!(exec.max_running.load(Ordering::SeqCst), 2);
        assert!(exec.max_processes.load(Ordering::SeqCst) <= 2);
    });
}

#[test]
fn ops_waiting_for_a_cpu_permit_never_start_after_a_failure() {
    // One worker thread: the tasks ask for the permit in the order they were
    // spawned, so `bad` (the earliest vertex) takes it and the rest wait.
    // On two workers a later task could ask first and run before `bad`
    // legitimately (CI saw all eleven run).
    current_thread().block_on(async {
        let mut g = Graph::new();
        let bad = g.add(FakeOp::failing(1, 20), &[], VertexOptions::named("bad"));
        let queued = leaves(&mut g, 10..20, FakeOp::new, 20, |i| format!("q{i}"));
        let mut targets = vec![bad];
        targets.extend(queued.iter().copied());
        let exec = Arc::new(FakeExecutor::default());
        let (events, sink) = recorder();
        let solver = fresh(&exec).options(unbounded(1)).events(sink);
        assert!(solver.solve(&g, &targets).await.is_err());
        assert_eq!(
            *exec.runs.lock().unwrap(),
            [1],
            "ops started after the first failure"
        );
        // A step that only waited for a permit was never reported started
        // (or cancelled): progress shows only what ran.
        let events = events.lock().unwrap();
        assert!(!events.iter().any(|e| matches!(
            e,
            Event::Started { vertex, .. } | Event::Cancelled { vertex } if queued.contains(vertex)
        )));
    });
}

#[test]
fn panicking_op_is_an_error_not_a_crash() {
    rt().block_on(async {
        let mut g = Graph::new();
        let op = FakeOp {
            panic: true,
            ..FakeOp::new(1, 0)
        };
        let v = g.add(op, &[], VertexOptions::named("buggy"));
        let solver = Solver::new(
            Arc::new(FakeExecutor::default()),
            Arc::new(MemoryCache::new()),
        );
        let err = solver.solve(&g, &[v]).await.unwrap_err();
        assert!(err.to_string().contains("internal error"), "{err}");
    });
}

#[test]
fn external_cancellation_stops_everything() {
    rt().block_on(async {
        let mut g = Graph::new();
        let v = g.add(FakeOp::new(1, 10_000), &[], VertexOptions::named("slow"));
        let token = CancellationToken::new();
        let exec = Arc::new(FakeExecutor::default());
        let solver = fresh(&exec).cancel_token(token.clone());
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            token.cancel();
        });
        let err = solver.solve(&g, &[v]).await.unwrap_err();
        canceller.await.unwrap();
        assert!(matches!(err, SolveError::Cancelled), "{err:?}");
        assert_eq!(*exec.cancelled.lock().unwrap(), vec![1]);
    });
}

fn chain(g: &mut Graph<FakeOp>, ids: &[u64]) -> Vec<VertexId> {
    let mut out = Vec::new();
    for (step, id) in ids.iter().enumerate() {
        let inputs: Vec<_> = out.last().copied().into_iter().collect();
        out.push(g.add(
            FakeOp::new(*id, 1),
            &inputs,
            VertexOptions::named(format!("step {step}")).step_id(format!("Dockerfile#{step}")),
        ));
    }
    out
}

#[test]
fn unchanged_rebuild_runs_nothing_and_needs_no_inputs() {
    rt().block_on(async {
        let mut g = Graph::new();
        let steps = chain(&mut g, &[1, 2, 3, 4]);
        let top = *steps.last().unwrap();
        let exec = Arc::new(FakeExecutor::default());
        let cache = Arc::new(MemoryCache::new());
        let solver = Solver::new(exec.clone(), cache.clone());
        let first = solver.solve(&g, &[top]).await.unwrap();
        assert_eq!(first.executed, 4);
        // Even with the intermediate results gone, a cached target needs
        // nothing below it.
        cache.evict(&first.keys[&steps[0]]);
        cache.evict(&first.keys[&steps[1]]);
        let (events, sink) = recorder();
        let solver = Solver::new(exec.clone(), cache.clone()).events(sink);
        let second = solver.solve(&g, &[top]).await.unwrap();
        assert_eq!((second.executed, second.cached), (0, 1));
        assert_eq!(second.output(top), first.output(top));
        assert_eq!(exec.total_runs(), 4);
        let cached: Vec<_> = events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Cached { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(cached, vec!["step 3".to_owned()]);
    });
}

#[test]
fn a_changed_step_reruns_it_and_what_follows_only() {
    rt().block_on(async {
        let exec = Arc::new(FakeExecutor::default());
        let cache = Arc::new(MemoryCache::new());
        let mut g = Graph::new();
        let steps = chain(&mut g, &[1, 2, 3, 4]);
        Solver::new(exec.clone(), cache.clone())
            .solve(&g, &[steps[3]])
            .await
            .unwrap();
        let mut g2 = Graph::new();
        let steps2 = chain(&mut g2, &[1, 2, 30, 4]);
        let (events, sink) = recorder();
        let solver = Solver::new(exec.clone(), cache.clone())
            .events(sink)
            .options(SolveOptions {
                explain: true,
                ..SolveOptions::default()
            });
        let solution = solver.solve(&g2, &[steps2[3]]).await.unwrap();
        assert_eq!((solution.executed, solution.cached), (2, 1));
        assert_eq!(exec.runs_of(30), 1);
        assert_eq!(exec.runs_of(4), 2);
        assert_eq!(exec.runs_of(2), 1);
        // --explain: step 2's own definition changed; step 3's parent changed.
        let events = events.lock().unwrap();
        let missed: Vec<(String, Vec<String>)> = events
            .iter()
            .filter_map(|e| match e {
                Event::Missed {
                    name,
                    changes,
                    known: true,
                    ..
                } => Some((
                    name.clone(),
                    changes.iter().map(|c| c.field.clone()).collect(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            missed,
            vec![
                ("step 3".to_owned(), vec!["input[0]".to_owned()]),
                ("step 2".to_owned(), vec!["op.id".to_owned()]),
            ]
        );
    });
}

#[test]
fn changed_content_misses_and_is_explained() {
    rt().block_on(async {
        let exec = Arc::new(FakeExecutor::default());
        exec.contents.lock().unwrap().insert(1, "sha256:aaa".into());
        let cache = Arc::new(MemoryCache::new());
        let mut g = Graph::new();
        let steps = chain(&mut g, &[1, 2]);
        let (events, sink) = recorder();
        let solver = Solver::new(exec.clone(), cache.clone())
            .events(sink)
            .options(SolveOptions {
                explain: true,
                ..SolveOptions::default()
            });
        solver.solve(&g, &[steps[1]]).await.unwrap();
        assert_eq!(solver.solve(&g, &[steps[1]]).await.unwrap().executed, 0);
        exec.contents.lock().unwrap().insert(1, "sha256:bbb".into());
        events.lock().unwrap().clear();
        assert_eq!(solver.solve(&g, &[steps[1]]).await.unwrap().executed, 2);
        let events = events.lock().unwrap();
        let change = events
            .iter()
            .find_map(|e| match e {
                Event::Missed { name, changes, .. } if name == "step 0" => Some(changes.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(change.len(), 1);
        assert_eq!(
            change[0].to_string(),
            "content.file:data.txt changed: sha256:aaa -> sha256:bbb"
        );
    });
}

#[test]
fn no_cache_vertex_reruns_with_its_consumers_but_not_its_inputs() {
    rt().block_on(async {
        let exec = Arc::new(FakeExecutor::default());
        let cache = Arc::new(MemoryCache::new());
        let mut g = Graph::new();
        let steps = chain(&mut g, &[1, 2, 3]);
        let solver = Solver::new(exec.clone(), cache.clone());
        solver.solve(&g, &[steps[2]]).await.unwrap();
        g.set_no_cache(steps[1], true);
        let solution = solver.solve(&g, &[steps[2]]).await.unwrap();
        assert_eq!(solution.executed, 2);
        assert_eq!(
            (exec.runs_of(1), exec.runs_of(2), exec.runs_of(3)),
            (1, 2, 2)
        );
        // --no-cache for everything
        let solver = Solver::new(exec.clone(), cache.clone()).options(SolveOptions {
            no_cache: true,
            ..SolveOptions::default()
        });
        assert_eq!(solver.solve(&g, &[steps[2]]).await.unwrap().executed, 3);
    });
}

#[test]
fn unreachable_vertices_never_run() {
    rt().block_on(async {
        let exec = Arc::new(FakeExecutor::default());
        let mut g = Graph::new();
        let used = g.add(FakeOp::new(1, 0), &[], VertexOptions::named("used"));
        let unused = g.add(
            FakeOp::failing(2, 10_000),
            &[],
            VertexOptions::named("unused stage"),
        );
        let solver = fresh(&exec);
        let solution = solver.solve(&g, &[used]).await.unwrap();
        assert_eq!(solution.executed, 1);
        assert_eq!(exec.runs_of(2), 0);
        assert!(!solution.keys.contains_key(&unused));
    });
}
