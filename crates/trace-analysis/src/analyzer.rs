//! The [`Analyzer`] sink and the [`Analysis`] it produces.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use trace_model::{Arg, ArgValue, Event, EventSink, Phase, Ps, SharedArgs};

use crate::classify::{OpKind, runtime_event};

/// A fast non-cryptographic hasher for the per-event lookups (names and
/// thread ids come from the trace, not from an attacker who could exploit
/// collisions; a slow lookup would only make a hostile trace slow).
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf) ^ (rest.len() as u64) << 56);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_u32(&mut self, n: u32) {
        self.add(n as u64);
    }

    fn write_u8(&mut self, n: u8) {
        self.add(n as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FxBuild = BuildHasherDefault<FxHasher>;

/// Slots of [`Analyzer::name_cache`].
const NAME_CACHE: usize = 1024;

/// The phases counted in an array rather than a map, in slot order.
const SLOT_PHASES: [Phase; 7] = [
    Phase::Complete,
    Phase::Begin,
    Phase::End,
    Phase::Instant,
    Phase::Counter,
    Phase::Metadata,
    Phase::Missing,
];
const N_PHASE_SLOTS: usize = SLOT_PHASES.len();

fn phase_slot(phase: Phase) -> Option<usize> {
    Some(match phase {
        Phase::Complete => 0,
        Phase::Begin => 1,
        Phase::End => 2,
        Phase::Instant => 3,
        Phase::Counter => 4,
        Phase::Metadata => 5,
        Phase::Missing => 6,
        Phase::Other(_) => return None,
    })
}

/// One operation instance, kept in buffered mode until
/// [`Analyzer::finish`]. 24 bytes.
#[derive(Clone, Copy)]
struct Rec {
    thread: u32,
    name: u32,
    start: Ps,
    dur: Ps,
}

struct NameAcc {
    /// The thread of this name's last operation, to skip most inserts into
    /// `name_threads`.
    last_thread: u32,
    name: Box<str>,
    count: u64,
    total: i128,
    max: Ps,
    hlo_module: Option<Box<str>>,
    has_hlo: bool,
    /// The id of the shared args last scanned for HLO stats: scanning the
    /// same ones again would change nothing.
    last_shared: u64,
    /// The next name whose text has the same hash, `u32::MAX` for none.
    next: u32,
}

/// The hash `Analyzer::name_ids` files a name under.
fn name_hash(name: &str) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(name.as_bytes());
    hasher.finish()
}

/// Where a thread's operations run. The discriminant indexes per-name
/// flags.
#[derive(Clone, Copy)]
enum DeviceLine {
    Host = 0,
    /// The `XLA Ops` line of a `/device:` plane (or any other line of it).
    Ops = 1,
    /// The `XLA Modules` line: one event per program execution.
    Modules = 2,
    /// The `Steps` line: training/inference step markers.
    Steps = 3,
}

/// An operation whose children are still arriving: (name, end, dur, time
/// of direct children so far).
type Open = (u32, Ps, Ps, i128);

/// How many roots a thread remembers for [`Analyzer::merge`]: an earlier
/// part's open operations rarely outlast more than a few of them.
pub(crate) const ROOT_CAP: usize = 4096;

/// Per-thread state of the online self-time computation.
#[derive(Default)]
struct ThreadState {
    stack: Vec<Open>,
    /// The first operation that starts at `ties_start`, (name, dur), held
    /// back until a later start arrives.
    pending: Option<(u32, Ps)>,
    /// The operations after `pending` with the same start, in file order.
    /// All of them are nested longest first, as the buffered sort would.
    ties: Vec<(u32, Ps)>,
    ties_start: Ps,
    /// The start of the first operation of this thread that this analyzer
    /// saw.
    first_start: Option<Ps>,
    /// (end, dur) of the first [`ROOT_CAP`] operations that found the stack
    /// empty: the ones that an earlier part's open operations may contain.
    roots: Vec<(Ps, Ps)>,
    /// Whether roots were left out of `roots`.
    roots_cut: bool,
    /// Whether an operation of this thread started before one held before
    /// it: the thread's self times are then not exact.
    unordered: bool,
}

impl ThreadState {
    /// Nests the operations held back, if any.
    #[inline(always)]
    fn flush_ties(&mut self, self_ps: &mut [i128]) {
        let Some((name, dur)) = self.pending.take() else {
            return;
        };
        if self.ties.is_empty() {
            // The common case: nothing else started at the same time.
            self.place(self_ps, name, dur);
        } else {
            self.flush_tied(self_ps, (name, dur));
        }
    }

    #[inline(never)]
    fn flush_tied(&mut self, self_ps: &mut [i128], first: (u32, Ps)) {
        let mut ties = std::mem::take(&mut self.ties);
        ties.insert(0, first);
        // A stable sort: equal durations keep file order.
        ties.sort_by_key(|&(_, dur)| Reverse(dur));
        for &(name, dur) in &ties {
            self.place(self_ps, name, dur);
        }
        ties.clear();
        self.ties = ties;
    }

    /// Holds back an operation that starts at `start`, nesting the ones
    /// held before when it starts later than they do. Returns false when
    /// it starts earlier than they do (out of order); it is then held with
    /// them.
    #[inline(always)]
    fn hold(&mut self, self_ps: &mut [i128], name: u32, start: Ps, dur: Ps) -> bool {
        if self.pending.is_none() || start > self.ties_start {
            self.flush_ties(self_ps);
            self.ties_start = start;
            self.pending = Some((name, dur));
            return true;
        }
        self.ties.push((name, dur));
        start == self.ties_start
    }

    /// The operations held back, in file order.
    fn held(&self) -> impl Iterator<Item = (u32, Ps)> + '_ {
        self.pending.iter().chain(&self.ties).copied()
    }

    /// Nests one operation that starts at `ties_start`, noting it when it
    /// is a root.
    #[inline(always)]
    fn place(&mut self, self_ps: &mut [i128], name: u32, dur: Ps) {
        if nest(&mut self.stack, self_ps, name, self.ties_start, dur) {
            self.note_root(self.ties_start.saturating_add(dur), dur);
        }
    }

    fn note_root(&mut self, end: Ps, dur: Ps) {
        if self.roots.len() < ROOT_CAP {
            self.roots.push((end, dur));
        } else {
            self.roots_cut = true;
        }
    }
}

/// Collects the events of one trace. See the crate docs for the metrics.
///
/// By default self time is computed online: each thread's operations must
/// arrive sorted by start time, which is how JAX writes both its JSON and
/// its XPlane (operations with equal starts may come in any order; they are
/// held back and nested longest first). Memory is then one entry
/// per distinct name and per open operation. A thread that breaks the
/// order (for example `B`/`E` pairs, which complete after their children)
/// makes [`Analysis::self_time_exact`] false; the caller then reads those
/// threads' events again into a [`crate::SelfTimeFix`] (the analysis lists
/// them in [`Analysis::unordered_threads`]), or, when it does not list them
/// (an inexact [`Analyzer::merge`]), the whole trace into
/// [`Analyzer::buffered`], which keeps every operation (24 bytes each) and
/// sorts them at the end.
///
/// Aligned to 128 bytes, so that analyzers side by side in a `Vec`, each
/// fed on its own thread, never share a cache line (sharing made a
/// two-thread analysis slower than one thread).
#[repr(align(128))]
pub struct Analyzer {
    buffered: bool,
    n_events: u64,
    /// Events per phase: the common ones counted in `phase_counts` (see
    /// [`phase_slot`]), the rest in the map.
    phase_counts: [u64; N_PHASE_SLOTS],
    phases: HashMap<Phase, u64, FxBuild>,
    /// A direct-mapped cache in front of `name_ids`, keyed by where the
    /// name lies in memory: (address, length, id, epoch). A hit is checked
    /// against the interned name's text, so a reader that reuses a buffer
    /// for different names only costs a miss; while the reader says names
    /// stay put ([`EventSink::stable_names`]), a hit checked once in the
    /// current `epoch` is trusted without reading the name again.
    name_cache: Box<[(usize, usize, u32, u32); NAME_CACHE]>,
    /// The number of the current period of stable names, 0 when names may
    /// move (entries of epoch 0 are always checked).
    epoch: u32,
    /// The last epoch given out.
    last_epoch: u32,
    /// Names by the hash of their text: the first name with that hash;
    /// others follow through [`NameAcc::next`]. The text is kept once, in
    /// `names` (a name of 100 MB costs 100 MB, not twice that).
    name_ids: HashMap<u64, u32, FxBuild>,
    names: Vec<NameAcc>,
    thread_ids: HashMap<(u64, u64), u32, FxBuild>,
    /// The last thread looked up: consecutive events mostly share it.
    last_thread: Option<((u64, u64), u32)>,
    threads: Vec<(u64, u64)>,
    thread_states: Vec<ThreadState>,
    /// (name, thread) pairs seen, to tell which names ran on a device.
    name_threads: HashSet<(u32, u32), FxBuild>,
    self_ps: Vec<i128>,
    out_of_order: u64,
    /// Open `B` events per thread: (name id, start).
    open: HashMap<u32, Vec<(u32, Ps)>>,
    recs: Vec<Rec>,
    op_events: u64,
    first_start: Option<Ps>,
    last_end: Option<Ps>,
    process_names: HashMap<u64, String>,
    thread_names: HashMap<(u64, u64), String>,
    unmatched_end: u64,
    invalid: u64,
    /// Set by [`Analyzer::merge`] when the parts could not be joined
    /// exactly.
    merge_inexact: bool,
    /// [`Analyzer::reordering`]'s window per thread.
    reorder: Option<Reorder>,
}

/// An operation held by [`Reorder`]: (start, longer first, arrival, name),
/// so that the smallest is the one the buffered sort puts first.
type HeldOp = Reverse<(Ps, Reverse<Ps>, u64, u32)>;

/// The operations of each thread not yet nested, earliest first, in the
/// order the buffered sort would give (start, longer first, file order).
struct Reorder {
    window: usize,
    heaps: Vec<BinaryHeap<HeldOp>>,
    seq: u64,
}

impl Reorder {
    /// Takes an operation; gives back the earliest one when the thread's
    /// window is full.
    fn push(&mut self, thread: u32, name: u32, start: Ps, dur: Ps) -> Option<(u32, Ps, Ps)> {
        let idx = thread as usize;
        if self.heaps.len() <= idx {
            self.heaps.resize_with(idx + 1, BinaryHeap::new);
        }
        self.seq += 1;
        self.heaps[idx].push(Reverse((start, Reverse(dur), self.seq, name)));
        if self.heaps[idx].len() > self.window {
            self.pop(thread)
        } else {
            None
        }
    }

    /// The thread's earliest operation still held. (One earlier than an
    /// operation already let go of reaches the online nesting out of
    /// order, which makes the result inexact.)
    fn pop(&mut self, thread: u32) -> Option<(u32, Ps, Ps)> {
        let Reverse((start, Reverse(dur), _, name)) = self.heaps.get_mut(thread as usize)?.pop()?;
        Some((name, start, dur))
    }
}

/// The number of events of one phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseCount {
    pub phase: Phase,
    pub count: u64,
}

impl PhaseCount {
    /// The key of the phase in the report and `summary.json`, unique among
    /// the phases of one analysis. A non-standard `ph` is kept under its
    /// first letter, with a `*` after it when that letter alone is a
    /// standard phase (`Xfoo` becomes `X*`), so that it never lands on the
    /// count of the real phase.
    pub fn label(&self) -> String {
        match self.phase {
            Phase::Other(c)
                if !matches!(
                    Phase::from_code(c.encode_utf8(&mut [0; 4])),
                    Phase::Other(_)
                ) =>
            {
                format!("{c}*")
            }
            phase => phase.label(),
        }
    }
}

/// Aggregated numbers of one operation name.
#[derive(Clone, Debug, PartialEq)]
pub struct OpStats {
    /// The exact name in the trace (Python tracer names keep their `$`).
    pub name: String,
    pub count: u64,
    /// Sum of durations, picoseconds.
    pub total_ps: i128,
    /// Longest single duration, picoseconds.
    pub max_ps: Ps,
    /// Sum of self times, picoseconds (see the crate docs).
    pub self_ps: i128,
    pub kind: OpKind,
    /// The `hlo_module` arg of the first event carrying one.
    pub hlo_module: Option<String>,
}

impl OpStats {
    /// The name shown in reports: the Python tracer's leading `$` dropped.
    pub fn display_name(&self) -> &str {
        self.name.strip_prefix('$').unwrap_or(&self.name)
    }

    pub fn avg_ps(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ps as f64 / self.count as f64
        }
    }
}

/// Everything the report needs from one trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// Every event of the file, any phase, including ones without `ph`.
    pub total_events: u64,
    /// Operation instances: complete events plus matched `B`/`E` pairs.
    pub op_events: u64,
    /// Earliest start and latest end of the timed events, when any.
    pub span: Option<(Ps, Ps)>,
    /// Sorted by count, descending, then by phase letter.
    pub phases: Vec<PhaseCount>,
    /// Every operation name, sorted by total time descending, then name.
    pub ops: Vec<OpStats>,
    /// Process names from `process_name` metadata, sorted by pid.
    pub processes: Vec<(u64, String)>,
    /// `B` events never closed and `E` events with nothing open.
    pub unmatched_begin: u64,
    pub unmatched_end: u64,
    /// Complete events without a timestamp or duration, or with a negative
    /// duration; counted in `total_events` and `phases` but not in `ops`.
    pub invalid_events: u64,
    /// False when an online analyzer saw a thread's operations out of order,
    /// so `self_ps` is not to be trusted (see [`Analyzer`]).
    pub self_time_exact: bool,
    /// When self time is not exact only because these threads' operations
    /// came out of order, the threads as (pid, tid), sorted: a
    /// [`SelfTimeFix`] fed their events makes it exact. Empty otherwise.
    pub unordered_threads: Vec<(u64, u64)>,
}

impl Analysis {
    /// Distinct names of operations.
    pub fn unique_operations(&self) -> usize {
        self.ops.len()
    }

    /// Latest end minus earliest start, picoseconds; 0 without timed events.
    pub fn traced_time_ps(&self) -> Ps {
        self.span.map_or(0, |(start, end)| end - start)
    }

    /// The number of events of `phase`.
    pub fn phase_count(&self, phase: Phase) -> u64 {
        self.phases
            .iter()
            .find(|it| it.phase == phase)
            .map_or(0, |it| it.count)
    }

    /// XLA operations and runtime events, in `ops` order.
    pub fn accelerator_ops(&self) -> impl Iterator<Item = &OpStats> {
        self.ops.iter().filter(|it| {
            matches!(
                it.kind,
                OpKind::Xla { .. } | OpKind::XlaModule | OpKind::Runtime
            )
        })
    }

    pub fn op(&self, name: &str) -> Option<&OpStats> {
        self.ops.iter().find(|it| it.name == name)
    }
}

impl Default for Analyzer {
    fn default() -> Analyzer {
        Analyzer::new()
    }
}

impl Analyzer {
    /// An analyzer computing self time online (see the type's docs).
    pub fn new() -> Analyzer {
        Analyzer::with_mode(false)
    }

    /// An analyzer that keeps every operation and accepts any order.
    pub fn buffered() -> Analyzer {
        Analyzer::with_mode(true)
    }

    /// An online analyzer that puts each thread's operations back in order
    /// within a window of `window` operations (24 bytes each) before
    /// nesting them: exact for a thread whose operations come at most that
    /// far out of order, and not exact ([`Analysis::self_time_exact`]
    /// false) for one that does not.
    pub fn reordering(window: usize) -> Analyzer {
        let mut analyzer = Analyzer::with_mode(false);
        analyzer.reorder = Some(Reorder {
            window: window.max(1),
            heaps: Vec::new(),
            seq: 0,
        });
        analyzer
    }

    fn with_mode(buffered: bool) -> Analyzer {
        Analyzer {
            buffered,
            thread_states: Vec::new(),
            name_threads: HashSet::default(),
            last_thread: None,
            self_ps: Vec::new(),
            out_of_order: 0,
            op_events: 0,
            n_events: 0,
            phase_counts: [0; N_PHASE_SLOTS],
            phases: HashMap::default(),
            name_cache: Box::new([(0, 0, u32::MAX, 0); NAME_CACHE]),
            epoch: 0,
            last_epoch: 0,
            name_ids: HashMap::default(),
            names: Vec::new(),
            thread_ids: HashMap::default(),
            threads: Vec::new(),
            open: HashMap::new(),
            recs: Vec::new(),
            first_start: None,
            last_end: None,
            process_names: HashMap::new(),
            thread_names: HashMap::new(),
            unmatched_end: 0,
            invalid: 0,
            merge_inexact: false,
            reorder: None,
        }
    }

    /// Adds what `later` collected, as if its events had come to this
    /// analyzer after this analyzer's own: feed the consecutive parts of one
    /// stream to separate analyzers (on separate threads, say), then merge
    /// them in stream order. The result is the analysis of the whole stream,
    /// except that [`Analysis::self_time_exact`] may come out false where
    /// one pass would have been exact: when a thread's operations with one
    /// start time, or a `B`/`E` pair, straddle the cut, or when an operation
    /// open at the cut contains more than a few thousand of the later
    /// part's top-level operations. Read the stream again into
    /// [`Analyzer::buffered`] then, as after any inexact analysis.
    pub fn merge(&mut self, later: Analyzer) {
        let Analyzer {
            buffered,
            n_events,
            phase_counts,
            phases,
            name_cache: _,
            epoch: _,
            last_epoch: _,
            name_ids: _,
            names,
            thread_ids: _,
            last_thread: _,
            threads,
            thread_states,
            name_threads,
            self_ps,
            out_of_order,
            open,
            recs,
            op_events,
            first_start,
            last_end,
            process_names,
            thread_names,
            unmatched_end,
            invalid,
            merge_inexact,
            reorder: _,
        } = later;
        self.merge_inexact |= merge_inexact || buffered != self.buffered;
        self.n_events += n_events;
        for (slot, count) in phase_counts.iter().enumerate() {
            self.phase_counts[slot] += count;
        }
        for (phase, count) in phases {
            *self.phases.entry(phase).or_insert(0) += count;
        }
        let name_map: Vec<u32> = names
            .into_iter()
            .zip(self_ps)
            .map(|(mut acc, self_time)| {
                // The later part's text moves over when the name is new.
                let hash = name_hash(&acc.name);
                let id = match self.find_name(hash, &acc.name) {
                    Some(id) => id,
                    None => self.add_name(hash, std::mem::take(&mut acc.name)),
                };
                let mine = &mut self.names[id as usize];
                mine.count += acc.count;
                mine.total += acc.total;
                mine.max = mine.max.max(acc.max);
                mine.has_hlo |= acc.has_hlo;
                if mine.hlo_module.is_none() {
                    mine.hlo_module = acc.hlo_module;
                }
                mine.last_thread = u32::MAX;
                self.self_ps[id as usize] += self_time;
                id
            })
            .collect();
        let thread_map: Vec<u32> = threads
            .iter()
            .map(|&(pid, tid)| self.thread_id(pid, tid))
            .collect();
        for (name, thread) in name_threads {
            self.name_threads
                .insert((name_map[name as usize], thread_map[thread as usize]));
        }
        let rename =
            |(name, end, dur, children): Open| (name_map[name as usize], end, dur, children);
        for (idx, state) in thread_states.into_iter().enumerate() {
            let mine = &mut self.thread_states[thread_map[idx] as usize];
            // A thread out of order with events in both parts: the joined
            // self time is not what one online pass over its events gives,
            // so a `SelfTimeFix` could not correct it. With events in one
            // part only, it is that part's pass.
            if (mine.unordered || state.unordered)
                && mine.first_start.is_some()
                && state.first_start.is_some()
            {
                self.merge_inexact = true;
            }
            mine.unordered |= state.unordered;
            let Some(first) = state.first_start else {
                continue;
            };
            if mine.pending.is_some() {
                if first < mine.ties_start {
                    self.out_of_order += 1;
                    self.merge_inexact = true;
                } else if first == mine.ties_start {
                    self.merge_inexact = true;
                }
            }
            mine.flush_ties(&mut self.self_ps);
            // The later part's roots go, in order, where one pass would have
            // put them: inside this part's operations still open.
            let mut roots = state.roots.iter();
            while !mine.stack.is_empty() {
                let Some(&(end, dur)) = roots.next() else {
                    self.merge_inexact |= state.roots_cut;
                    break;
                };
                charge(&mut mine.stack, &mut self.self_ps, end, dur);
            }
            if mine.stack.is_empty() {
                for &(end, dur) in roots {
                    mine.note_root(end, dur);
                }
                mine.roots_cut |= state.roots_cut;
            }
            mine.first_start.get_or_insert(first);
            let mut held = state
                .held()
                .map(|(name, dur)| (name_map[name as usize], dur));
            mine.pending = held.next();
            mine.ties = held.collect();
            mine.stack.extend(state.stack.into_iter().map(rename));
            mine.ties_start = state.ties_start;
        }
        if unmatched_end > 0 && self.open.values().any(|it| !it.is_empty()) {
            self.merge_inexact = true;
        }
        for (thread, pending) in open {
            self.open
                .entry(thread_map[thread as usize])
                .or_default()
                .extend(
                    pending
                        .into_iter()
                        .map(|(name, start)| (name_map[name as usize], start)),
                );
        }
        self.recs.extend(recs.into_iter().map(|rec| Rec {
            thread: thread_map[rec.thread as usize],
            name: name_map[rec.name as usize],
            ..rec
        }));
        self.out_of_order += out_of_order;
        self.op_events += op_events;
        if let Some(start) = first_start {
            self.first_start = Some(self.first_start.map_or(start, |it| it.min(start)));
        }
        if let Some(end) = last_end {
            self.last_end = Some(self.last_end.map_or(end, |it| it.max(end)));
        }
        self.process_names.extend(process_names);
        self.thread_names.extend(thread_names);
        self.unmatched_end += unmatched_end;
        self.invalid += invalid;
    }

    /// The id of `name`, interned on first sight. The common case, a name
    /// trusted in this epoch of stable names, is inlined into the caller.
    #[inline(always)]
    fn name_id(&mut self, name: &str) -> u32 {
        let at = name.as_ptr() as usize;
        let slot = ((at >> 3) ^ at.rotate_left(17) ^ name.len()) % NAME_CACHE;
        let (cached_at, cached_len, cached, cached_epoch) = self.name_cache[slot];
        if cached_at == at
            && cached_len == name.len()
            && self.epoch != 0
            && cached_epoch == self.epoch
        {
            return cached;
        }
        self.name_id_checked(name, slot)
    }

    /// [`Analyzer::name_id`] when the cache cannot vouch for `name` alone.
    #[inline(never)]
    fn name_id_checked(&mut self, name: &str, slot: usize) -> u32 {
        let at = name.as_ptr() as usize;
        let (cached_at, cached_len, cached, _) = self.name_cache[slot];
        if cached_at == at
            && cached_len == name.len()
            && self
                .names
                .get(cached as usize)
                .is_some_and(|it| *it.name == *name)
        {
            self.name_cache[slot].3 = self.epoch;
            return cached;
        }
        let hash = name_hash(name);
        let id = match self.find_name(hash, name) {
            Some(id) => id,
            None => self.add_name(hash, name.into()),
        };
        self.name_cache[slot] = (at, name.len(), id, self.epoch);
        id
    }

    /// The id of `name`, whose hash is `hash`, if it was seen.
    fn find_name(&self, hash: u64, name: &str) -> Option<u32> {
        let mut id = *self.name_ids.get(&hash)?;
        while id != u32::MAX {
            let acc = &self.names[id as usize];
            if *acc.name == *name {
                return Some(id);
            }
            id = acc.next;
        }
        None
    }

    /// Interns a new name, taking its text.
    fn add_name(&mut self, hash: u64, name: Box<str>) -> u32 {
        let id = self.names.len() as u32;
        let next = self.name_ids.insert(hash, id).unwrap_or(u32::MAX);
        self.names.push(NameAcc {
            last_thread: u32::MAX,
            name,
            count: 0,
            total: 0,
            max: 0,
            hlo_module: None,
            has_hlo: false,
            last_shared: u64::MAX,
            next,
        });
        self.self_ps.push(0);
        id
    }

    #[inline(always)]
    fn thread_id(&mut self, pid: u64, tid: u64) -> u32 {
        if let Some((key, id)) = self.last_thread
            && key == (pid, tid)
        {
            return id;
        }
        if let Some(&id) = self.thread_ids.get(&(pid, tid)) {
            self.last_thread = Some(((pid, tid), id));
            return id;
        }
        let id = self.threads.len() as u32;
        self.threads.push((pid, tid));
        self.thread_states.push(ThreadState::default());
        self.thread_ids.insert((pid, tid), id);
        self.last_thread = Some(((pid, tid), id));
        id
    }

    #[inline(always)]
    fn note_time(&mut self, start: Ps, end: Ps) {
        self.first_start = Some(self.first_start.map_or(start, |it| it.min(start)));
        self.last_end = Some(self.last_end.map_or(end, |it| it.max(end)));
    }

    #[inline(always)]
    fn add_op(&mut self, thread: u32, name: u32, start: Ps, dur: Ps) {
        let acc = &mut self.names[name as usize];
        acc.count += 1;
        acc.total += dur as i128;
        acc.max = acc.max.max(dur);
        self.op_events += 1;
        if acc.last_thread != thread {
            acc.last_thread = thread;
            self.name_threads.insert((name, thread));
        }
        if self.buffered {
            self.recs.push(Rec {
                thread,
                name,
                start,
                dur,
            });
            return;
        }
        if let Some(reorder) = &mut self.reorder {
            if let Some((name, start, dur)) = reorder.push(thread, name, start, dur) {
                self.nest_online(thread, name, start, dur);
            }
            return;
        }
        self.nest_online(thread, name, start, dur);
    }

    #[inline(always)]
    fn nest_online(&mut self, thread: u32, name: u32, start: Ps, dur: Ps) {
        let state = &mut self.thread_states[thread as usize];
        state.first_start.get_or_insert(start);
        if !state.hold(&mut self.self_ps, name, start, dur) {
            self.out_of_order += 1;
            state.unordered = true;
        }
    }

    /// Notes whether `name` runs HLO and in which module, from the event's
    /// args (its own, then its shared ones); events without args, most of
    /// them, cost a test.
    #[inline(always)]
    fn note_hlo(&mut self, name: u32, event: &Event<'_>, shared: Option<&SharedArgs<'_>>) {
        if !event.args.is_empty() || shared.is_some_and(|it| !it.args.is_empty()) {
            self.note_hlo_args(name, event.args, shared);
        }
    }

    fn note_hlo_args(&mut self, name: u32, own: &[Arg<'_>], shared: Option<&SharedArgs<'_>>) {
        let acc = &mut self.names[name as usize];
        if acc.has_hlo && acc.hlo_module.is_some() {
            return;
        }
        let note = |acc: &mut NameAcc, args: &[Arg<'_>]| {
            for arg in args {
                match arg.key {
                    "hlo_op" => acc.has_hlo = true,
                    "hlo_module" => {
                        acc.has_hlo = true;
                        if acc.hlo_module.is_none()
                            && let ArgValue::Str(module) = arg.value
                        {
                            acc.hlo_module = Some(module.into());
                        }
                    }
                    _ => {}
                }
            }
        };
        note(acc, own);
        if let Some(shared) = shared
            && acc.last_shared != shared.id
        {
            note(acc, shared.args);
            acc.last_shared = shared.id;
        }
    }

    /// Aggregates what was collected.
    pub fn finish(mut self) -> Analysis {
        if let Some(mut reorder) = self.reorder.take() {
            for thread in 0..reorder.heaps.len() {
                while let Some((name, start, dur)) = reorder.pop(thread as u32) {
                    self.nest_online(thread as u32, name, start, dur);
                }
            }
        }
        let mut self_ps = std::mem::take(&mut self.self_ps);
        for state in &mut self.thread_states {
            state.flush_ties(&mut self_ps);
            pop_all(&mut state.stack, &mut self_ps);
        }
        if self.buffered {
            // Per thread, in start order with the longer (outer) event first
            // on ties; a stable sort keeps file order for identical
            // intervals, so the first of two identical events is the parent.
            self.recs
                .sort_by_key(|it| (it.thread, it.start, Reverse(it.dur)));
            let mut stack: Vec<Open> = Vec::new();
            let mut current_thread = None;
            for rec in &self.recs {
                if current_thread != Some(rec.thread) {
                    pop_all(&mut stack, &mut self_ps);
                    current_thread = Some(rec.thread);
                }
                nest(&mut stack, &mut self_ps, rec.name, rec.start, rec.dur);
            }
            pop_all(&mut stack, &mut self_ps);
        }
        // What each thread is: host, or which line of a device plane.
        let lines: Vec<DeviceLine> = self
            .threads
            .iter()
            .map(|key| {
                let on_device = self
                    .process_names
                    .get(&key.0)
                    .is_some_and(|name| name.starts_with("/device:"));
                match (on_device, self.thread_names.get(key).map(String::as_str)) {
                    (false, _) => DeviceLine::Host,
                    (true, Some("XLA Modules")) => DeviceLine::Modules,
                    (true, Some("Steps")) => DeviceLine::Steps,
                    (true, _) => DeviceLine::Ops,
                }
            })
            .collect();
        let mut seen_on = vec![[false; 4]; self.names.len()];
        for &(name, thread) in &self.name_threads {
            seen_on[name as usize][lines[thread as usize] as usize] = true;
        }

        let unmatched_begin = self.open.values().map(|it| it.len() as u64).sum();
        let op_events = self.op_events;
        drop(self.recs);

        let mut ops: Vec<OpStats> = self
            .names
            .into_iter()
            .enumerate()
            .filter(|(_, acc)| acc.count > 0)
            .map(|(idx, acc)| {
                let on = |line: DeviceLine| seen_on[idx][line as usize];
                let kind = if on(DeviceLine::Ops) {
                    OpKind::Xla { device: true }
                } else if on(DeviceLine::Modules) {
                    OpKind::XlaModule
                } else if on(DeviceLine::Steps) {
                    OpKind::Other
                } else if acc.has_hlo {
                    OpKind::Xla { device: false }
                } else if runtime_event(&acc.name) {
                    OpKind::Runtime
                } else if acc.name.starts_with('$') {
                    OpKind::Python
                } else {
                    OpKind::Other
                };
                OpStats {
                    name: acc.name.into(),
                    count: acc.count,
                    total_ps: acc.total,
                    max_ps: acc.max,
                    self_ps: self_ps[idx],
                    kind,
                    hlo_module: acc.hlo_module.map(Into::into),
                }
            })
            .collect();
        ops.sort_by(|a, b| {
            b.total_ps
                .cmp(&a.total_ps)
                .then_with(|| a.name.cmp(&b.name))
        });

        for (slot, &count) in self.phase_counts.iter().enumerate() {
            if count > 0 {
                *self.phases.entry(SLOT_PHASES[slot]).or_insert(0) += count;
            }
        }
        let mut phases: Vec<PhaseCount> = self
            .phases
            .into_iter()
            .map(|(phase, count)| PhaseCount { phase, count })
            .collect();
        phases.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.label().cmp(&b.label()))
        });

        let mut processes: Vec<(u64, String)> = self.process_names.into_iter().collect();
        processes.sort();

        let exact = !self.merge_inexact && (self.buffered || self.out_of_order == 0);
        let mut unordered_threads: Vec<(u64, u64)> = if exact || self.merge_inexact {
            Vec::new()
        } else {
            self.threads
                .iter()
                .zip(&self.thread_states)
                .filter(|(_, state)| state.unordered)
                .map(|(thread, _)| *thread)
                .collect()
        };
        unordered_threads.sort_unstable();
        Analysis {
            total_events: self.n_events,
            op_events,
            span: self.first_start.zip(self.last_end),
            phases,
            ops,
            processes,
            unmatched_begin,
            unmatched_end: self.unmatched_end,
            invalid_events: self.invalid,
            self_time_exact: exact,
            unordered_threads,
        }
    }
}

/// Places an operation in its thread's stack of open operations: closes
/// those that end before it does, charges it to its parent, opens it.
/// Returns whether it has no parent (a root).
#[inline(always)]
fn nest(stack: &mut Vec<Open>, self_ps: &mut [i128], name: u32, start: Ps, dur: Ps) -> bool {
    let end = start.saturating_add(dur);
    let root = charge(stack, self_ps, end, dur);
    stack.push((name, end, dur, 0));
    root
}

/// Closes the open operations that end before `end` and charges `dur` to
/// the innermost one left; returns whether none was left.
#[inline(always)]
fn charge(stack: &mut Vec<Open>, self_ps: &mut [i128], end: Ps, dur: Ps) -> bool {
    while let Some(&(_, top_end, _, _)) = stack.last() {
        if end <= top_end {
            break;
        }
        pop_one(stack, self_ps);
    }
    match stack.last_mut() {
        Some(top) => {
            top.3 += dur as i128;
            false
        }
        None => true,
    }
}

fn pop_one(stack: &mut Vec<Open>, self_ps: &mut [i128]) {
    if let Some((name, _, dur, children)) = stack.pop() {
        // Children that overlap each other can add up to more than the
        // parent; self time never goes below zero.
        self_ps[name as usize] += (dur as i128 - children).max(0);
    }
}

fn pop_all(stack: &mut Vec<Open>, self_ps: &mut [i128]) {
    while !stack.is_empty() {
        pop_one(stack, self_ps);
    }
}

impl EventSink for Analyzer {
    fn stable_names(&mut self, stable: bool) {
        self.epoch = if stable {
            // A new epoch: what was checked before may have moved since.
            if self.last_epoch == u32::MAX {
                self.name_cache.iter_mut().for_each(|it| it.3 = 0);
                self.last_epoch = 0;
            }
            self.last_epoch += 1;
            self.last_epoch
        } else {
            0
        };
    }

    fn event(&mut self, event: &Event<'_>) {
        self.record(event, None);
    }

    fn takes_split_args(&self) -> bool {
        true
    }

    fn split_event(&mut self, event: &Event<'_>, shared: SharedArgs<'_>) {
        self.record(event, Some(&shared));
    }
}

impl Analyzer {
    /// One event, with its shared args when the reader split them off.
    #[inline(always)]
    fn record(&mut self, event: &Event<'_>, shared: Option<&SharedArgs<'_>>) {
        self.n_events += 1;
        match phase_slot(event.phase) {
            Some(slot) => self.phase_counts[slot] += 1,
            None => *self.phases.entry(event.phase).or_insert(0) += 1,
        }
        match event.phase {
            Phase::Metadata => match (event.name, event.arg("name")) {
                ("process_name", Some(ArgValue::Str(name))) => {
                    self.process_names.insert(event.pid, name.to_owned());
                }
                ("thread_name", Some(ArgValue::Str(name))) => {
                    // A name given again (millions of empty lines) costs
                    // no allocation.
                    match self.thread_names.get_mut(&(event.pid, event.tid)) {
                        Some(known) if known == name => {}
                        Some(known) => name.clone_into(known),
                        None => {
                            self.thread_names
                                .insert((event.pid, event.tid), name.to_owned());
                        }
                    }
                }
                _ => {}
            },
            Phase::Complete => match (event.ts, event.dur) {
                (Some(start), Some(dur)) if dur >= 0 => {
                    self.note_time(start, start.saturating_add(dur));
                    let thread = self.thread_id(event.pid, event.tid);
                    let name = self.name_id(event.name);
                    self.note_hlo(name, event, shared);
                    self.add_op(thread, name, start, dur);
                }
                _ => self.invalid += 1,
            },
            Phase::Begin => match event.ts {
                Some(start) => {
                    self.note_time(start, start);
                    let thread = self.thread_id(event.pid, event.tid);
                    let name = self.name_id(event.name);
                    self.note_hlo(name, event, shared);
                    self.open.entry(thread).or_default().push((name, start));
                }
                None => self.invalid += 1,
            },
            Phase::End => {
                let Some(end) = event.ts else {
                    self.invalid += 1;
                    return;
                };
                self.note_time(end, end);
                let thread = self.thread_id(event.pid, event.tid);
                match self.open.get_mut(&thread).and_then(|it| it.pop()) {
                    Some((name, start)) if end >= start => {
                        self.add_op(thread, name, start, end - start)
                    }
                    Some(_) => self.invalid += 1,
                    None => self.unmatched_end += 1,
                }
            }
            Phase::Instant | Phase::Counter | Phase::Other(_) => {
                if let Some(ts) = event.ts {
                    self.note_time(ts, ts);
                }
            }
            Phase::Missing => {}
        }
    }
}
