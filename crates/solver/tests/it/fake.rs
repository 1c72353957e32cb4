//! A fake executor: ops compute a number from their id and inputs after a
//! delay, and the executor records what ran, how many ran at once and what
//! was cancelled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_solver::{CacheKey, ContentKey, Executor, KeyEncoder, Op, OpContext, OpError, Stream};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeOp {
    pub id: u64,
    pub delay_ms: u64,
    pub fail: bool,
    pub panic: bool,
    /// Like a RUN step: not [`Op::cpu_bound`]; a short setup and teardown
    /// under a CPU permit around a "process" that holds none.
    pub process: bool,
}

impl FakeOp {
    pub fn new(id: u64, delay_ms: u64) -> FakeOp {
        FakeOp {
            id,
            delay_ms,
            fail: false,
            panic: false,
            process: false,
        }
    }

    pub fn process(id: u64, delay_ms: u64) -> FakeOp {
        FakeOp {
            process: true,
            ..FakeOp::new(id, delay_ms)
        }
    }

    pub fn failing(id: u64, delay_ms: u64) -> FakeOp {
        FakeOp {
            fail: true,
            ..FakeOp::new(id, delay_ms)
        }
    }
}

impl CacheKey for FakeOp {
    fn encode_key(&self, enc: &mut KeyEncoder) {
        enc.tag("fake", 1);
        enc.u64("id", self.id);
        // delay, fail and panic change how it runs, not what it produces
        // (kept out like non-semantic fields of real ops).
    }
}

impl Op for FakeOp {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn cpu_bound(&self) -> bool {
        !self.process
    }
}

/// The pure function every op computes; order of inputs matters.
pub fn compute(id: u64, inputs: &[u64]) -> u64 {
    let mut acc = id.wrapping_mul(1_000_003).wrapping_add(7);
    for (i, x) in inputs.iter().enumerate() {
        acc = acc.rotate_left(5) ^ x.wrapping_mul(31 + i as u64);
    }
    acc
}

#[derive(Default)]
pub struct FakeExecutor {
    pub runs: Mutex<Vec<u64>>,
    pub cancelled: Mutex<Vec<u64>>,
    pub running: AtomicUsize,
    pub max_running: AtomicUsize,
    /// Content per op id (like context files an op reads).
    pub contents: Mutex<HashMap<u64, String>>,
    /// Ops doing "kiln's own work" now (a cpu-bound op's whole run, a
    /// process op's setup and teardown), and the most seen at once.
    pub cpu_work: AtomicUsize,
    pub max_cpu_work: AtomicUsize,
    /// Process ops whose process is running now, and the most at once.
    pub processes: AtomicUsize,
    pub max_processes: AtomicUsize,
    /// When set, every process waits here until this many processes are
    /// running at once (a condition, not a delay: a scheduler that bounds
    /// them below that never gets past it).
    pub process_barrier: Option<Arc<tokio::sync::Barrier>>,
}

/// Counts one unit of work in `now`/`max` while alive.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(now: &'a AtomicUsize, max: &AtomicUsize) -> Counted<'a> {
        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(n, Ordering::SeqCst);
        Counted(now)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeExecutor {
    pub fn runs_of(&self, id: u64) -> usize {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .filter(|r| **r == id)
            .count()
    }

    pub fn total_runs(&self) -> usize {
        self.runs.lock().unwrap().len()
    }
}

impl Executor for FakeExecutor {
    type Op = FakeOp;
    type Output = u64;

    async fn content_key(
        &self,
        op: &FakeOp,
        _ctx: &OpContext,
    ) -> Result<Option<ContentKey>, OpError> {
        Ok(self
            .contents
            .lock()
            .unwrap()
            .get(&op.id)
            .map(|c| ContentKey {
                fields: vec![("file:data.txt".to_owned(), c.clone())],
            }))
    }

    async fn execute(&self, op: &FakeOp, inputs: Vec<u64>, ctx: OpContext) -> Result<u64, OpError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        self.runs.lock().unwrap().push(op.id);
        ctx.log(Stream::Stdout, format!("running {}\n", op.id).into_bytes());
        let outcome = if op.process {
            self.process(op, &ctx).await
        } else {
            let _cpu = Counted::new(&self.cpu_work, &self.max_cpu_work);
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(op.delay_ms)) => None,
                () = ctx.cancelled() => Some(OpError::Cancelled),
            }
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        if let Some(err) = outcome {
            self.cancelled.lock().unwrap().push(op.id);
            return Err(err);
        }
        assert!(!op.panic, "fake op {} panics on purpose", op.id);
        if op.fail {
            return Err(OpError::failed(format!("op {} failed on purpose", op.id)));
        }
        // Hashing goes through rayon in real ops; exercise that path.
        let id = op.id;
        ctx.cpu(move || compute(id, &inputs)).await
    }
}

impl FakeExecutor {
    /// A process op: setup under a CPU permit, the process without one
    /// (waiting for the barrier if any, then `delay_ms`), teardown under a
    /// permit again.
    async fn process(&self, op: &FakeOp, ctx: &OpContext) -> Option<OpError> {
        let phase = |ms: u64| async move {
            let permit = match ctx.cpu_permit().await {
                Ok(p) => p,
                Err(e) => return Some(e),
            };
            let _cpu = Counted::new(&self.cpu_work, &self.max_cpu_work);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            drop(permit);
            None
        };
        if let Some(e) = phase(2).await {
            return Some(e);
        }
        {
            let _p = Counted::new(&self.processes, &self.max_processes);
            let run = async {
                if let Some(b) = &self.process_barrier {
                    b.wait().await;
                }
                tokio::time::sleep(Duration::from_millis(op.delay_ms)).await;
            };
            tokio::select! {
                () = run => {}
                () = ctx.cancelled() => return Some(OpError::Cancelled),
            }
        }
        phase(2).await
    }
}
