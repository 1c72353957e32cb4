//! A fake executor: ops compute a number from their id and inputs after a
//! delay, and the executor records what ran, how many ran at once and what
//! was cancelled.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kiln_solver::{CacheKey, ContentKey, Executor, KeyEncoder, Op, OpContext, OpError, Stream};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeOp {
    pub id: u64,
    pub delay_ms: u64,
    pub fail: bool,
    pub panic: bool,
}

impl FakeOp {
    pub fn new(id: u64, delay_ms: u64) -> FakeOp {
        FakeOp {
            id,
            delay_ms,
            fail: false,
            panic: false,
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
        let outcome = tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(op.delay_ms)) => None,
            () = ctx.cancelled() => Some(OpError::Cancelled),
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
