//! The op graph: a DAG of ops, each consuming the outputs of earlier ones.
//!
//! A vertex's inputs must exist when it is added, so the graph is acyclic by
//! construction. Edges point from an input to its consumer and carry the
//! input's position.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

/// A vertex of a [`Graph`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VertexId(pub(crate) NodeIndex<u32>);

impl VertexId {
    /// The vertex's position in insertion order.
    pub fn index(self) -> usize {
        self.0.index()
    }
}

impl fmt::Debug for VertexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0.index())
    }
}

impl fmt::Display for VertexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0.index())
    }
}

/// What the graph holds per vertex.
#[derive(Debug)]
pub struct Vertex<O> {
    /// The op.
    pub op: Arc<O>,
    /// What progress shows, e.g. `[build 2/4] RUN make`.
    pub name: String,
    /// A stable identity across builds (e.g. `Dockerfile#build/2`): the key
    /// of the pre-image that `--explain` compares with. `None`: not explained.
    pub step_id: Option<String>,
    /// Never look this vertex (nor anything consuming it) up in the cache.
    pub no_cache: bool,
    /// The vertices whose outputs this op consumes, in order.
    pub inputs: Vec<VertexId>,
}

/// Options of one vertex; see [`Graph::add`].
#[derive(Debug, Clone, Default)]
pub struct VertexOptions {
    /// See [`Vertex::name`].
    pub name: String,
    /// See [`Vertex::step_id`].
    pub step_id: Option<String>,
    /// See [`Vertex::no_cache`].
    pub no_cache: bool,
}

impl VertexOptions {
    /// Options with just a display name.
    pub fn named(name: impl Into<String>) -> VertexOptions {
        VertexOptions {
            name: name.into(),
            ..VertexOptions::default()
        }
    }

    /// Set the stable step identity used by `--explain`.
    #[must_use]
    pub fn step_id(mut self, id: impl Into<String>) -> VertexOptions {
        self.step_id = Some(id.into());
        self
    }

    /// Bypass the cache for this vertex and its consumers.
    #[must_use]
    pub fn no_cache(mut self, yes: bool) -> VertexOptions {
        self.no_cache = yes;
        self
    }
}

/// A DAG of ops of type `O`.
#[derive(Debug)]
pub struct Graph<O> {
    pub(crate) g: DiGraph<Vertex<O>, u32>,
}

impl<O> Default for Graph<O> {
    fn default() -> Self {
        Graph { g: DiGraph::new() }
    }
}

impl<O> Graph<O> {
    /// An empty graph.
    pub fn new() -> Graph<O> {
        Graph::default()
    }

    /// Add an op consuming the outputs of `inputs` (in that order).
    ///
    /// # Panics
    /// If an input is not a vertex of this graph (a programming error: ids
    /// only come from `add` on the same graph).
    pub fn add(&mut self, op: O, inputs: &[VertexId], options: VertexOptions) -> VertexId {
        for input in inputs {
            assert!(
                input.0.index() < self.g.node_count(),
                "input {input} is not a vertex of this graph"
            );
        }
        let id = self.g.add_node(Vertex {
            op: Arc::new(op),
            name: options.name,
            step_id: options.step_id,
            no_cache: options.no_cache,
            inputs: inputs.to_vec(),
        });
        for (pos, input) in inputs.iter().enumerate() {
            let pos = u32::try_from(pos).unwrap_or(u32::MAX);
            self.g.add_edge(input.0, id, pos);
        }
        VertexId(id)
    }

    /// One vertex.
    pub fn vertex(&self, id: VertexId) -> &Vertex<O> {
        &self.g[id.0]
    }

    /// Mutable access to one vertex's flags (not its inputs).
    pub fn set_no_cache(&mut self, id: VertexId, yes: bool) {
        self.g[id.0].no_cache = yes;
    }

    /// How many vertices there are.
    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    /// Whether the graph is empty.
    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// Every vertex id, in insertion order (which is a topological order).
    pub fn ids(&self) -> impl Iterator<Item = VertexId> + '_ {
        self.g.node_indices().map(VertexId)
    }

    /// The vertices consuming `id`'s output.
    pub fn consumers(&self, id: VertexId) -> impl Iterator<Item = VertexId> + '_ {
        self.g
            .edges_directed(id.0, Direction::Outgoing)
            .map(|e| VertexId(e.target()))
    }

    /// The vertices `targets` depend on (themselves included), in
    /// topological order (inputs first).
    pub fn reachable(&self, targets: &[VertexId]) -> Vec<VertexId> {
        let mut seen = HashSet::new();
        let mut stack: Vec<VertexId> = targets.to_vec();
        while let Some(v) = stack.pop() {
            if seen.insert(v) {
                stack.extend(self.g[v.0].inputs.iter().copied());
            }
        }
        // Insertion order is topological: inputs exist before consumers.
        let mut out: Vec<VertexId> = seen.into_iter().collect();
        out.sort_unstable();
        out
    }
}
