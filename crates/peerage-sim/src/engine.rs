//! The engine: a virtual clock, one event queue per node, and conservative parallel windows.
//!
//! Every message between nodes takes at least the least link delay `L`, so within a window
//! `[t, t + L)` no node can affect another: the nodes with events in the window run it in
//! parallel, then their messages are routed in node order. Each node's RNG is its own, and
//! every queue orders ties by insertion, so a run depends only on the scenario and the seed,
//! never on the number of threads.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    io::Write,
    time::{Duration, Instant},
};

use peerage_core::maintenance::Bounds;
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use rayon::prelude::*;

use crate::{
    node::{Counts, Ev, Msg, SimNode},
    report::{Report, Sample},
    scenario::Scenario,
    world::{Nanos, World, nanos},
};

/// Options of a run.
pub struct Options {
    scenario: Scenario,
    seed: u64,
    threads: usize,
    log: Option<Box<dyn Write + Send>>,
    progress: Option<Box<dyn FnMut(Duration) + Send>>,
    free_in_background: bool,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("scenario", &self.scenario.name)
            .field("seed", &self.seed)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// A run of `scenario` with seed 1, one thread, no log file.
    pub fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            seed: 1,
            threads: 1,
            log: None,
            progress: None,
            free_in_background: false,
        }
    }
    /// The RNG seed. 1 by default.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Worker threads. 1 by default; the outcome does not depend on it.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }
    /// Writes the event log to `log`: one line per input fed to a node machine, per command
    /// taken from it and per admission decision (`?`), with its time and node; an answer to a
    /// request for points as its size and a digest of its points. The engine's own lines
    /// (joins, leaves, samples) are hashed but not written. None by default; the log is
    /// hashed either way.
    pub fn with_log(mut self, log: Box<dyn Write + Send>) -> Self {
        self.log = Some(log);
        self
    }
    /// Called with the simulated time now and then, for a progress bar.
    pub fn with_progress(mut self, progress: Box<dyn FnMut(Duration) + Send>) -> Self {
        self.progress = Some(progress);
        self
    }
    /// Frees the nodes on a thread of their own once the report is made, so that [`run`]
    /// returns without waiting for it: for a program that exits next (freeing a 10,000-node
    /// run took 5 s). The log is closed first either way. `false` by default: back-to-back
    /// runs would otherwise hold two runs' memory at once.
    pub fn with_free_in_background(mut self, free_in_background: bool) -> Self {
        self.free_in_background = free_in_background;
        self
    }
}

/// A run that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] crate::scenario::Error),
    /// The worker threads could not be started.
    #[error("cannot start {threads} worker threads: {reason}")]
    Threads {
        /// How many.
        threads: usize,
        /// Why.
        reason: String,
    },
    /// The log could not be written.
    #[error("cannot write the event log")]
    Log(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Global {
    Sample,
    Leave,
    PartitionOpen(usize),
    PartitionHeal(usize),
    Stop,
    Join(u32),
}

struct Engine {
    world: World,
    nodes: Vec<Option<Box<SimNode>>>,
    ready: BinaryHeap<Reverse<(Nanos, u32)>>,
    global: BinaryHeap<Reverse<(Nanos, u64, Global)>>,
    global_seq: u64,
    rng: StdRng,
    hasher: blake3::Hasher,
    log: Option<Box<dyn Write + Send>>,

    end: Nanos,
    bounds: Bounds,
    samples: Vec<Sample>,
    /// Counters of nodes that left.
    gone: Counts,
    node_seconds: f64,
    last_sample: Nanos,
    /// Stable since (every live node within bounds since then).
    stable_since: Option<Nanos>,
    converged: Option<Nanos>,
    stopped_at: Option<Nanos>,
    recovered: Option<Nanos>,
    done: bool,
    /// The latest time processed.
    now: Nanos,
    /// When the last initial node starts.
    joins_end: Nanos,
}

/// Runs a scenario.
///
/// # Errors
///
/// [`Error::Scenario`] if it is invalid, [`Error::Threads`], [`Error::Log`].
pub fn run(mut options: Options) -> Result<Report, Error> {
    options.scenario.validate()?;
    let wall = Instant::now();
    let threads = options.threads;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        // The event loop, and with one thread every node, runs on a pool thread: the stack of
        // a program's main thread (8 MiB), not a spawned thread's default (2 MiB).
        .stack_size(8 << 20)
        .build()
        .map_err(|e| Error::Threads {
            threads,
            reason: e.to_string(),
        })?;
    let mut engine = Engine::new(&options);
    engine.log = options.log.take();
    let lookahead = engine.world.min_delay();
    let mut progress = options.progress.take();
    let mut last_progress = 0;
    // The loop runs on one of the pool's threads, so that each batch's parallel walk starts
    // and ends there: from outside the pool, every batch (tens of thousands an hour at 10,000
    // nodes) also put this thread to sleep and woke it again.
    pool.install(|| -> Result<(), Error> {
        loop {
            let t_node = engine.peek_ready();
            let t_global = engine.global.peek().map(|Reverse((t, ..))| *t);
            let t0 = match (t_node, t_global) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if t0 >= engine.end || engine.done {
                break;
            }
            engine.now = t0;
            if t_global.is_some_and(|g| g <= t0) {
                let Reverse((t, _, ev)) = engine.global.pop().expect("peeked");
                engine.on_global(t, ev);
                engine.flush_log()?;
                continue;
            }
            let end = (t0 + lookahead)
                .min(t_global.unwrap_or(Nanos::MAX))
                .min(engine.end);
            let mut batch = engine.take_batch(end);
            let world = &engine.world;
            if threads > 1 && batch.len() > 1 {
                batch.par_iter_mut().for_each(|n| n.run_until(end, world));
            } else {
                for n in &mut batch {
                    n.run_until(end, world);
                }
            }
            engine.put_back(batch);
            engine.flush_log()?;
            if let Some(p) = &mut progress
                && t0 >= last_progress + 1_000_000_000
            {
                last_progress = t0;
                p(Duration::from_nanos(t0));
            }
        }
        Ok(())
    })?;
    let simulated = if engine.done { engine.now } else { engine.end };
    if engine.last_sample < simulated {
        engine.sample(simulated);
    }
    if let Some(log) = &mut engine.log {
        log.flush()?;
    }
    let report = engine.report(&options, simulated, wall.elapsed());
    // A writer may finish its output when dropped: before `run` returns, whatever the thread.
    drop(engine.log.take());
    if options.free_in_background {
        // If no thread can be started, the closure, and the engine, are dropped here.
        let _ = std::thread::Builder::new()
            .name("sim-free".into())
            .spawn(move || drop(engine));
    }
    Ok(report)
}

impl Engine {
    fn new(options: &Options) -> Self {
        let s = options.scenario.clone();
        let base = Instant::now();
        let mut rng = StdRng::seed_from_u64(options.seed);
        let mut engine = Self {
            bounds: Bounds::from_connections(s.connections),
            end: nanos(s.duration),
            world: World::new(s.clone(), options.seed, base),
            nodes: Vec::new(),
            ready: BinaryHeap::new(),
            global: BinaryHeap::new(),
            global_seq: 0,
            rng: StdRng::seed_from_u64(0),
            hasher: blake3::Hasher::new(),
            log: None,
            samples: Vec::new(),
            gone: Counts::default(),
            node_seconds: 0.0,
            last_sample: 0,
            stable_since: None,
            converged: None,
            stopped_at: None,
            recovered: None,
            done: false,
            now: 0,
            joins_end: 0,
        };
        // Adversaries come after the honest nodes.
        let honest = s.nodes;
        for i in 0..honest {
            let bootstrap = i < s.bootstrap;
            let index = engine.world.add_node(&mut rng, bootstrap, None);
            let at = if bootstrap || s.join_over.is_zero() {
                0
            } else {
                rng.random_range(0..nanos(s.join_over))
            };
            engine
                .nodes
                .push(Some(Box::new(SimNode::new(index, options.seed))));
            engine.joins_end = engine.joins_end.max(at);
            engine.schedule(at, Global::Join(index));
        }
        for a in &s.adversaries {
            for _ in 0..a.count {
                let index = engine.world.add_node(&mut rng, false, Some(a.kind));
                engine
                    .nodes
                    .push(Some(Box::new(SimNode::new(index, options.seed))));
                engine.schedule(0, Global::Join(index));
            }
        }
        for (i, p) in s.partitions.iter().enumerate() {
            engine.schedule(nanos(p.at), Global::PartitionOpen(i));
            engine.schedule(nanos(p.heal), Global::PartitionHeal(i));
        }
        if s.churn_per_hour > 0.0 {
            let first = engine.next_leave(&mut rng, 0);
            engine.schedule(first, Global::Leave);
        }
        engine.schedule(0, Global::Sample);
        engine.rng = rng;
        engine
    }

    fn schedule(&mut self, t: Nanos, ev: Global) {
        self.global_seq += 1;
        self.global.push(Reverse((t, self.global_seq, ev)));
    }

    /// The next leave: churn is a Poisson process with `churn_per_hour` × the initial honest
    /// non-bootstrap nodes leaves per hour.
    fn next_leave(&self, rng: &mut StdRng, t: Nanos) -> Nanos {
        let s = &self.world.scenario;
        let per_s = s.churn_per_hour * (s.nodes - s.bootstrap) as f64 / 3600.0;
        let wait = -(1.0 - rng.random::<f64>()).ln() / per_s.max(1e-9);
        t + (wait * 1e9) as Nanos
    }

    /// The earliest valid scheduled node time.
    fn peek_ready(&mut self) -> Option<Nanos> {
        while let Some(&Reverse((t, i))) = self.ready.peek() {
            let valid = self.nodes[i as usize]
                .as_ref()
                .is_some_and(|n| n.scheduled == Some(t));
            if valid {
                return Some(t);
            }
            self.ready.pop();
        }
        None
    }

    fn reschedule(&mut self, i: u32) {
        let Some(n) = self.nodes[i as usize].as_mut() else {
            return;
        };
        if let Some(t) = n.next_time()
            && n.scheduled.is_none_or(|s| t < s)
        {
            n.scheduled = Some(t);
            self.ready.push(Reverse((t, i)));
        }
    }

    #[allow(clippy::vec_box)] // Nodes move between the table and a batch by pointer.
    fn take_batch(&mut self, end: Nanos) -> Vec<Box<SimNode>> {
        let mut indices = Vec::new();
        while let Some(&Reverse((t, i))) = self.ready.peek() {
            if t >= end {
                break;
            }
            self.ready.pop();
            if self.nodes[i as usize]
                .as_ref()
                .is_some_and(|n| n.scheduled == Some(t))
            {
                indices.push(i);
            }
        }
        indices.sort_unstable();
        indices.dedup();
        indices
            .into_iter()
            .map(|i| {
                let mut n = self.nodes[i as usize].take().expect("scheduled node");
                n.scheduled = None;
                n
            })
            .collect()
    }

    #[allow(clippy::vec_box)]
    fn put_back(&mut self, batch: Vec<Box<SimNode>>) {
        let mut touched = Vec::with_capacity(batch.len());
        let mut outboxes = Vec::new();
        for mut n in batch {
            let i = n.index;
            self.hasher.update(n.log.as_bytes());
            if let Some(w) = &mut self.log {
                // Errors surface at the next flush.
                let _ = w.write_all(n.log.as_bytes());
            }
            n.log.clear();
            // A busy window (a join, a burst of answers) must not pin its buffer for good:
            // 10,000 nodes each keeping a few tens of KB would be hundreds of MB.
            n.log.shrink_to(4096);
            outboxes.push((i, std::mem::take(&mut n.outbox)));
            self.nodes[i as usize] = Some(n);
            touched.push(i);
        }
        for (from, outbox) in outboxes {
            for (to, at, msg) in outbox {
                self.deliver(from, to, at, msg);
                touched.push(to);
            }
        }
        for i in touched {
            self.reschedule(i);
        }
    }

    /// Routes a message; one to a node that left or across a partition is lost, except a dial,
    /// which its dialer sees refused.
    fn deliver(&mut self, from: u32, to: u32, at: Nanos, msg: Msg) {
        let alive = self.world.nodes[to as usize].alive;
        if !alive || !self.world.connected(from, to) {
            if let Msg::Dial { conn, .. } = msg
                && let Some(n) = self.nodes[from as usize].as_mut()
            {
                let back = at + self.world.delay(from, to);
                n.push(
                    back,
                    Ev::Msg {
                        from: to,
                        msg: Box::new(Msg::Refused { conn }),
                    },
                );
                self.reschedule(from);
            }
            return;
        }
        if let Some(n) = self.nodes[to as usize].as_mut() {
            n.push(
                at,
                Ev::Msg {
                    from,
                    msg: Box::new(msg),
                },
            );
        }
    }

    fn flush_log(&mut self) -> Result<(), Error> {
        if let Some(w) = &mut self.log {
            w.flush()?;
        }
        Ok(())
    }

    fn live(&self) -> impl Iterator<Item = &SimNode> {
        self.nodes
            .iter()
            .flatten()
            .filter(|n| n.started.is_some() && self.world.nodes[n.index as usize].alive)
            .filter(|n| self.world.nodes[n.index as usize].adversary.is_none())
            .map(|n| &**n)
    }

    fn on_global(&mut self, t: Nanos, ev: Global) {
        self.hasher
            .update(format!("{t} global {ev:?}\n").as_bytes());
        match ev {
            Global::Join(i) => {
                self.world.nodes[i as usize].alive = true;
                if let Some(n) = self.nodes[i as usize].as_mut() {
                    n.push(t, Ev::Start);
                }
                self.reschedule(i);
            }
            Global::Leave => {
                let s = &self.world.scenario;
                let candidates: Vec<u32> = self
                    .live()
                    .map(|n| n.index)
                    .filter(|i| *i as usize >= s.bootstrap)
                    .collect();
                let mut rng = std::mem::replace(&mut self.rng, StdRng::seed_from_u64(0));
                if let Some(&i) = candidates.choose(&mut rng) {
                    self.leave(t, i);
                    let index = self.world.add_node(&mut rng, false, None);
                    self.nodes
                        .push(Some(Box::new(SimNode::new(index, rng.random()))));
                    self.schedule(t, Global::Join(index));
                }
                let next = self.next_leave(&mut rng, t);
                self.rng = rng;
                self.schedule(next, Global::Leave);
            }
            Global::Stop => {
                let s = &self.world.scenario;
                let mut live: Vec<u32> = self.live().map(|n| n.index).collect();
                live.sort_unstable();
                let stop = s.stop.min(live.len().saturating_sub(s.bootstrap));
                for i in live.into_iter().rev().take(stop) {
                    self.leave(t, i);
                }
                self.stopped_at = Some(t);
                self.stable_since = None;
            }
            Global::PartitionOpen(i) => {
                self.world.partition = Some(self.world.scenario.partitions[i].share);
                // Connections across are cut: both ends see the other close.
                let mut cuts = Vec::new();
                for n in self.nodes.iter().flatten() {
                    for (conn, remote) in n.open_conns() {
                        if !self.world.connected(n.index, remote) {
                            cuts.push((n.index, remote, conn));
                        }
                    }
                }
                for (a, b, conn) in cuts {
                    if let Some(n) = self.nodes[a as usize].as_mut() {
                        n.push(
                            t,
                            Ev::Msg {
                                from: b,
                                msg: Box::new(Msg::Close { conn }),
                            },
                        );
                    }
                    self.reschedule(a);
                }
            }
            Global::PartitionHeal(_) => self.world.partition = None,
            Global::Sample => {
                self.sample(t);
                let every = nanos(self.world.scenario.sample_every);
                self.schedule(t + every, Global::Sample);
            }
        }
    }

    /// A node leaves: its peers see their connections closed, its state is freed.
    fn leave(&mut self, t: Nanos, i: u32) {
        self.world.nodes[i as usize].alive = false;
        let Some(n) = self.nodes[i as usize].take() else {
            return;
        };
        for (conn, remote) in n.open_conns() {
            let at = t + self.world.delay(i, remote);
            if let Some(r) = self.nodes[remote as usize].as_mut() {
                r.push(
                    at,
                    Ev::Msg {
                        from: i,
                        msg: Box::new(Msg::Close { conn }),
                    },
                );
            }
            self.reschedule(remote);
        }
        let c = n.counts;
        self.gone.dials += c.dials;
        self.gone.closes += c.closes;
        self.gone.pex_requests += c.pex_requests;
        self.gone.records_opened += c.records_opened;
    }

    fn sample(&mut self, t: Nanos) {
        let dt = t.saturating_sub(self.last_sample) as f64 / 1e9;
        let (min, max) = (self.bounds.min(), self.bounds.max());
        let mut live = 0usize;
        let mut within = 0usize;
        let mut total = 0usize;
        for n in self.live() {
            live += 1;
            let a = n.active();
            total += a;
            if (min..=max).contains(&a) {
                within += 1;
            }
        }
        self.node_seconds += dt * live as f64;
        self.last_sample = t;
        let c = self.counts();
        self.samples.push(Sample {
            t_s: t as f64 / 1e9,
            live,
            within_bounds: if live == 0 {
                0.0
            } else {
                within as f64 / live as f64
            },
            mean_connections: if live == 0 {
                0.0
            } else {
                total as f64 / live as f64
            },
            dials: c.dials,
            closes: c.closes,
        });
        // Convergence counts once every initial node has started, as the devnet starts them
        // all before it watches.
        let started = t >= self.joins_end;
        let all = started && live > 0 && within == live;
        let s = &self.world.scenario;
        let stable = nanos(s.stable);
        if all {
            let since = *self.stable_since.get_or_insert(t);
            if t - since >= stable {
                if self.converged.is_none() {
                    self.converged = Some(since);
                    if s.stop > 0 {
                        self.schedule(t, Global::Stop);
                    } else if s.end_when_converged {
                        self.done = true;
                    }
                } else if let Some(stopped) = self.stopped_at
                    && self.recovered.is_none()
                    && since >= stopped
                {
                    self.recovered = Some(since);
                    if s.end_when_converged {
                        self.done = true;
                    }
                }
            }
        } else {
            self.stable_since = None;
        }
    }

    fn counts(&self) -> Counts {
        let mut c = self.gone;
        for n in self.nodes.iter().flatten() {
            c.dials += n.counts.dials;
            c.closes += n.counts.closes;
            c.pex_requests += n.counts.pex_requests;
            c.records_opened += n.counts.records_opened;
        }
        c
    }

    fn report(&mut self, options: &Options, simulated: Nanos, wall: Duration) -> Report {
        let live: Vec<&SimNode> = self.live().collect();
        let (min, max) = (self.bounds.min(), self.bounds.max());
        let mut conns: Vec<usize> = live.iter().map(|n| n.active()).collect();
        conns.sort_unstable();
        let within = conns.iter().filter(|a| (min..=max).contains(*a)).count();
        let over_max = conns.iter().filter(|a| **a > max).count();
        // The largest connected component of live honest nodes.
        let index: std::collections::HashMap<u32, usize> =
            live.iter().enumerate().map(|(k, n)| (n.index, k)).collect();
        let mut parent: Vec<usize> = (0..live.len()).collect();
        fn find(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        let mut edges = Vec::new();
        for (k, n) in live.iter().enumerate() {
            for remote in n.links() {
                if let Some(&r) = index.get(&remote) {
                    let (a, b) = (find(&mut parent, k), find(&mut parent, r));
                    parent[a] = b;
                    if k < r {
                        edges.push((k, r));
                    }
                }
            }
        }
        let mut sizes = vec![0usize; live.len()];
        for k in 0..live.len() {
            let root = find(&mut parent, k);
            sizes[root] += 1;
        }
        let giant = sizes.iter().max().copied().unwrap_or(0);
        // From when on at least 99 % of live nodes stayed within their bounds at every sample.
        let converged_99 = self
            .samples
            .iter()
            .rposition(|s| s.live == 0 || s.within_bounds < 0.99)
            .map_or(Some(0), |last_bad| Some(last_bad + 1))
            .and_then(|i| self.samples.get(i))
            .map(|s| s.t_s);
        let mut per_node = crate::report::Footprint::default();
        for n in &live {
            let f = n.footprint();
            per_node.points += f.points;
            per_node.point_log_entries += f.point_log_entries;
            per_node.point_bytes += f.point_bytes;
            per_node.peers += f.peers;
            per_node.peer_log_entries += f.peer_log_entries;
            per_node.peer_bytes += f.peer_bytes;
            per_node.peerstore_peers += f.peerstore_peers;
            per_node.connections += f.connections;
        }
        let k = live.len().max(1) as f64;
        for x in [
            &mut per_node.points,
            &mut per_node.point_log_entries,
            &mut per_node.point_bytes,
            &mut per_node.peers,
            &mut per_node.peer_log_entries,
            &mut per_node.peer_bytes,
            &mut per_node.peerstore_peers,
            &mut per_node.connections,
        ] {
            *x /= k;
        }
        let c = self.counts();
        let node_hours = (self.node_seconds / 3600.0).max(1e-9);
        let topology = (live.len() <= 300).then(|| crate::report::Topology {
            nodes: live.iter().map(|n| n.active()).collect(),
            edges: edges.clone(),
        });
        let pct = |q: f64| {
            conns
                .get(((conns.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        Report {
            scenario: self.world.scenario.name.clone(),
            nodes: self.world.scenario.nodes,
            seed: options.seed,
            threads: options.threads,
            simulated_s: simulated as f64 / 1e9,
            wall_ms: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
            log_hash: self.hasher.finalize().to_hex().to_string(),
            bounds: [self.bounds.min(), self.bounds.expected(), self.bounds.max()],
            live: live.len(),
            within_bounds: if live.is_empty() {
                0.0
            } else {
                within as f64 / live.len() as f64
            },
            over_max,
            connections: crate::report::Connections {
                min: conns.first().copied().unwrap_or(0),
                p50: pct(0.5),
                max: conns.last().copied().unwrap_or(0),
            },
            giant_component: if live.is_empty() {
                0.0
            } else {
                giant as f64 / live.len() as f64
            },
            converged_s: converged_99,
            all_within_s: self.converged.map(|t| t as f64 / 1e9),
            recovered_s: match (self.stopped_at, self.recovered) {
                (Some(s), Some(r)) => Some((r.saturating_sub(s)) as f64 / 1e9),
                _ => None,
            },
            per_node_hour: crate::report::PerNodeHour {
                dials: c.dials as f64 / node_hours,
                closes: c.closes as f64 / node_hours,
                pex_requests: c.pex_requests as f64 / node_hours,
            },
            records_opened: c.records_opened,
            per_node,
            samples: std::mem::take(&mut self.samples),
            topology,
        }
    }
}
