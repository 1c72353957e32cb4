//! Property: whatever the graph, the parallel scheduler computes what a
//! sequential reference evaluation computes, runs each distinct op once,
//! and a second solve runs nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kiln_solver::{Graph, MemoryCache, SolveOptions, Solver, VertexId, VertexOptions};
use proptest::prelude::*;

use crate::fake::{FakeExecutor, FakeOp, compute};

#[derive(Debug, Clone)]
struct Node {
    id: u64,
    delay_ms: u64,
    process: bool,
    inputs: Vec<usize>,
}

#[allow(clippy::type_complexity)]
fn graphs() -> impl Strategy<Value = (Vec<Node>, Vec<usize>, Option<usize>, usize)> {
    (1usize..14).prop_flat_map(|n| {
        let nodes = (0..n)
            .map(|i| {
                // few distinct ids, so identical ops occur
                (
                    0u64..5,
                    0u64..4,
                    any::<bool>(),
                    proptest::collection::vec(0..i.max(1), 0..=i.min(3)),
                )
                    .prop_map(move |(id, delay_ms, process, inputs)| Node {
                        id,
                        delay_ms,
                        process,
                        inputs: if i == 0 { Vec::new() } else { inputs },
                    })
            })
            .collect::<Vec<_>>();
        (
            nodes,
            proptest::collection::vec(0..n, 1..4),
            proptest::option::of(1usize..5),
            1usize..4,
        )
    })
}

fn reference(nodes: &[Node], memo: &mut HashMap<usize, u64>, i: usize) -> u64 {
    if let Some(v) = memo.get(&i) {
        return *v;
    }
    let inputs: Vec<u64> = nodes[i]
        .inputs
        .iter()
        .map(|j| reference(nodes, memo, *j))
        .collect();
    let v = compute(nodes[i].id, &inputs);
    memo.insert(i, v);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn parallel_solve_equals_sequential_reference((nodes, targets, jobs, cpu) in graphs()) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut g = Graph::new();
        let mut ids: Vec<VertexId> = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let inputs: Vec<VertexId> = n.inputs.iter().map(|j| ids[*j]).collect();
            // A RUN-like op (no CPU permit while its "process" runs) or
            // kiln's own work; both compute the same value.
            let op = if n.process {
                FakeOp::process(n.id, n.delay_ms)
            } else {
                FakeOp::new(n.id, n.delay_ms)
            };
            ids.push(g.add(
                op,
                &inputs,
                VertexOptions::named(format!("node {i}")),
            ));
        }
        let target_ids: Vec<VertexId> = targets.iter().map(|t| ids[*t]).collect();
        let mut memo = HashMap::new();
        let expected: HashMap<VertexId, u64> = targets
            .iter()
            .map(|t| (ids[*t], reference(&nodes, &mut memo, *t)))
            .collect();

        let exec = Arc::new(FakeExecutor::default());
        let cache = Arc::new(MemoryCache::new());
        let solver = Solver::new(exec.clone(), cache.clone())
            .options(SolveOptions { jobs, cpu, ..SolveOptions::default() });
        let solution = rt.block_on(solver.solve(&g, &target_ids)).unwrap();
        prop_assert_eq!(&solution.outputs, &expected);

        // Each distinct key ran exactly once.
        let distinct: HashSet<_> = solution.keys.values().collect();
        prop_assert_eq!(solution.executed, distinct.len());
        prop_assert_eq!(exec.total_runs(), distinct.len());
        if let Some(jobs) = jobs {
            prop_assert!(exec.max_running.load(std::sync::atomic::Ordering::SeqCst) <= jobs);
        }
        prop_assert!(exec.max_cpu_work.load(std::sync::atomic::Ordering::SeqCst) <= cpu);

        // Solving again runs nothing and gives the same outputs.
        let again = rt.block_on(solver.solve(&g, &target_ids)).unwrap();
        prop_assert_eq!(again.executed, 0);
        prop_assert_eq!(&again.outputs, &expected);
    }
}
