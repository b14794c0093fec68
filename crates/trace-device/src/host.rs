//! Explaining device idle gaps with host events: for each host thread, which
//! innermost event ran during the gaps between a device's programs.
//!
//! [`IdleExplainer`] works online: it is given the gaps first (from the
//! finished device planes) and then the host events, and keeps nothing per
//! event but the open ones of each thread. Events that touch no gap are
//! passed over, since no gap time can be charged to them or taken from
//! their parents by them. A reader that streams the host plane before the
//! device planes (the XPlane reader does) therefore reads the host plane a
//! second time into it; for other readers [`HostEvents`] keeps the host
//! events (24 bytes each) and replays them.

use rustc_hash::FxHashMap as HashMap;

use trace_model::{ArgValue, Event, EventSink, Phase, Ps, SharedArgs};

use crate::model::{DevicePlane, HostIdleRow};

const HOST_PLANE: &str = "/host:CPU";

/// One host complete event, 24 bytes.
#[derive(Clone, Copy, Debug)]
struct HostEvent {
    thread: u32,
    name: u32,
    start: Ps,
    end: Ps,
}

/// The host plane's complete events, names interned, kept for a replay.
#[derive(Debug, Default)]
pub(crate) struct HostEvents {
    names: Vec<Box<str>>,
    name_ids: HashMap<Box<str>, u32>,
    threads: Vec<u64>,
    thread_ids: HashMap<u64, u32>,
    thread_names: Vec<(u64, Box<str>)>,
    events: Vec<HostEvent>,
}

impl HostEvents {
    pub(crate) fn name_thread(&mut self, tid: u64, name: &str) {
        self.thread_names.push((tid, name.into()));
    }

    pub(crate) fn push(&mut self, tid: u64, name: &str, start: Ps, dur: Ps) {
        let thread = *self.thread_ids.entry(tid).or_insert_with(|| {
            self.threads.push(tid);
            self.threads.len() as u32 - 1
        });
        let name = match self.name_ids.get(name) {
            Some(&id) => id,
            None => {
                let id = self.names.len() as u32;
                self.names.push(name.into());
                self.name_ids.insert(name.into(), id);
                id
            }
        };
        self.events.push(HostEvent {
            thread,
            name,
            start,
            end: start.saturating_add(dur.max(0)),
        });
    }

    /// Feeds the kept events to `explainer`, each thread's in order of
    /// start, outer events first.
    pub(crate) fn replay(mut self, explainer: &mut IdleExplainer) {
        for (tid, name) in &self.thread_names {
            explainer.name_thread(*tid, name);
        }
        self.events
            .sort_by_key(|it| (it.thread, it.start, std::cmp::Reverse(it.end)));
        for event in &self.events {
            explainer.host_event(
                self.threads[event.thread as usize],
                &self.names[event.name as usize],
                event.start,
                event.end,
            );
        }
    }
}

/// What one host thread is doing, as far as one device plane's gaps care.
#[derive(Debug, Default)]
struct Track {
    /// Open events: (end, name id).
    stack: Vec<(Ps, u32)>,
    /// Where the innermost open event's own time resumes.
    now: Option<Ps>,
    /// The first gap that may still be charged (gaps before it ended).
    charge_gap: usize,
    /// The first gap that an event starting now may touch.
    skip_gap: usize,
    /// Per name id: (overlap, gaps touched, last gap counted); a name that
    /// touched no gap has no gap counted.
    acc: Vec<(Ps, u64, usize)>,
}

/// One host thread.
#[derive(Debug)]
struct Thread {
    tid: u64,
    /// Events with the latest start, held until a later start shows they
    /// are all there, then taken longest first.
    ties: Vec<(Ps, u32)>,
    tie_start: Ps,
    /// One track per device plane.
    tracks: Vec<Track>,
}

/// Charges, per device plane, the time of its idle gaps to the innermost
/// host event open on each thread; an [`EventSink`] for the host plane's
/// events in time order per thread (see the module docs).
///
/// Aligned to 128 bytes like [`crate::DeviceSink`]: it is fed on a thread
/// of its own while its neighbours on the caller's stack may be written
/// by another.
#[derive(Debug)]
#[repr(align(128))]
pub struct IdleExplainer {
    /// Each plane's gaps, sorted and disjoint.
    gaps: Vec<Vec<(Ps, Ps)>>,
    host_pid: Option<u64>,
    thread_names: HashMap<u64, Box<str>>,
    threads: Vec<Thread>,
    thread_ids: HashMap<u64, usize>,
    last_thread: Option<(u64, usize)>,
    names: Vec<Box<str>>,
    name_ids: HashMap<Box<str>, u32>,
    /// Host events that started before an earlier one of their thread:
    /// the attribution is exact only when this is 0.
    out_of_order: u64,
}

impl IdleExplainer {
    /// An explainer for the gaps of `planes` (their `idle.spans`).
    pub fn new(planes: &[DevicePlane]) -> IdleExplainer {
        IdleExplainer::of_gaps(planes.iter().map(|it| it.idle.spans.clone()).collect())
    }

    /// An explainer of each plane's gaps, sorted and disjoint.
    pub(crate) fn of_gaps(gaps: Vec<Vec<(Ps, Ps)>>) -> IdleExplainer {
        IdleExplainer {
            gaps,
            host_pid: None,
            thread_names: HashMap::default(),
            threads: Vec::new(),
            thread_ids: HashMap::default(),
            last_thread: None,
            names: Vec::new(),
            name_ids: HashMap::default(),
            out_of_order: 0,
        }
    }

    /// Whether any plane has a gap to explain: without one, host events
    /// need not be read at all.
    pub fn has_gaps(&self) -> bool {
        self.gaps.iter().any(|it| !it.is_empty())
    }

    pub(crate) fn name_thread(&mut self, tid: u64, name: &str) {
        self.thread_names.insert(tid, name.into());
    }

    fn thread(&mut self, tid: u64) -> usize {
        if let Some((last, idx)) = self.last_thread
            && last == tid
        {
            return idx;
        }
        let idx = match self.thread_ids.get(&tid) {
            Some(&idx) => idx,
            None => {
                self.threads.push(Thread {
                    tid,
                    ties: Vec::new(),
                    tie_start: Ps::MIN,
                    tracks: self.gaps.iter().map(|_| Track::default()).collect(),
                });
                self.thread_ids.insert(tid, self.threads.len() - 1);
                self.threads.len() - 1
            }
        };
        self.last_thread = Some((tid, idx));
        idx
    }

    /// Whether `[start, end)` touches a gap of any plane; moves each
    /// track's skip cursor past the gaps that ended before `start`.
    fn touches_gap(&mut self, thread: usize, start: Ps, end: Ps) -> bool {
        let mut touches = false;
        for (plane, gaps) in self.gaps.iter().enumerate() {
            let track = &mut self.threads[thread].tracks[plane];
            while track.skip_gap < gaps.len() && gaps[track.skip_gap].1 <= start {
                track.skip_gap += 1;
            }
            touches |= gaps.get(track.skip_gap).is_some_and(|gap| gap.0 < end);
        }
        touches
    }

    /// One host complete event of thread `tid`, `[start, end)`.
    pub(crate) fn host_event(&mut self, tid: u64, name: &str, start: Ps, end: Ps) {
        let thread = self.thread(tid);
        if start != self.threads[thread].tie_start {
            if start < self.threads[thread].tie_start {
                self.out_of_order += 1;
            }
            self.flush(thread);
            self.threads[thread].tie_start = start;
        }
        // An event that touches no gap, a zero-length one included, would
        // be charged nothing and take nothing from its parents.
        if end <= start || !self.touches_gap(thread, start, end) {
            return;
        }
        let name = match self.name_ids.get(name) {
            Some(&id) => id,
            None => {
                let id = self.names.len() as u32;
                self.names.push(name.into());
                self.name_ids.insert(name.into(), id);
                id
            }
        };
        self.threads[thread].ties.push((end, name));
    }

    /// Takes the held events of `thread`, longest first.
    fn flush(&mut self, thread: usize) {
        let mut ties = std::mem::take(&mut self.threads[thread].ties);
        if ties.len() > 1 {
            ties.sort_by_key(|it| std::cmp::Reverse(it.0));
        }
        let start = self.threads[thread].tie_start;
        for &(end, name) in &ties {
            for plane in 0..self.gaps.len() {
                self.open(plane, thread, name, start, end);
            }
        }
        ties.clear();
        self.threads[thread].ties = ties;
    }

    /// Charges `[a, b)` to `name` on `plane`'s gaps.
    fn charge(&mut self, plane: usize, thread: usize, name: u32, a: Ps, b: Ps) {
        let gaps = &self.gaps[plane];
        let track = &mut self.threads[thread].tracks[plane];
        while track.charge_gap < gaps.len() && gaps[track.charge_gap].1 <= a {
            track.charge_gap += 1;
        }
        let mut idx = track.charge_gap;
        while idx < gaps.len() && gaps[idx].0 < b {
            let overlap = b.min(gaps[idx].1) - a.max(gaps[idx].0);
            if overlap > 0 {
                let name = name as usize;
                if track.acc.len() <= name {
                    track.acc.resize(name + 1, (0, 0, usize::MAX));
                }
                let entry = &mut track.acc[name];
                entry.0 += overlap;
                if entry.2 != idx {
                    entry.1 += 1;
                    entry.2 = idx;
                }
            }
            idx += 1;
        }
    }

    /// Opens an event on one plane's track: the events it follows close,
    /// and the innermost open one is charged up to its start.
    fn open(&mut self, plane: usize, thread: usize, name: u32, start: Ps, end: Ps) {
        self.close_until(plane, thread, start);
        let track = &mut self.threads[thread].tracks[plane];
        let now = track.now.unwrap_or(start);
        if let Some(&(_, parent)) = track.stack.last() {
            self.charge(plane, thread, parent, now, start);
        }
        let track = &mut self.threads[thread].tracks[plane];
        track.now = Some(now.max(start));
        track.stack.push((end, name));
    }

    /// Closes the open events of a track that end at or before `until`.
    fn close_until(&mut self, plane: usize, thread: usize, until: Ps) {
        loop {
            let track = &mut self.threads[thread].tracks[plane];
            let Some(&(end, name)) = track.stack.last() else {
                return;
            };
            if end > until {
                return;
            }
            track.stack.pop();
            let now = track.now.unwrap_or(end);
            track.now = Some(now.max(end));
            self.charge(plane, thread, name, now, end);
        }
    }

    /// Writes each plane's rows into `planes` (the planes given to
    /// [`IdleExplainer::new`], in the same order).
    pub fn finish(mut self, planes: &mut [DevicePlane]) {
        for thread in 0..self.threads.len() {
            self.flush(thread);
            for plane in 0..self.gaps.len() {
                self.close_until(plane, thread, Ps::MAX);
            }
        }
        let mut rows: Vec<Vec<HostIdleRow>> = planes.iter().map(|_| Vec::new()).collect();
        for thread in &self.threads {
            let tid = thread.tid;
            for (plane, track) in thread.tracks.iter().enumerate() {
                for (name, &(overlap, n, _)) in track.acc.iter().enumerate() {
                    if n == 0 {
                        continue;
                    }
                    rows[plane].push(HostIdleRow {
                        thread: self
                            .thread_names
                            .get(&tid)
                            .map_or_else(|| format!("thread {tid}"), |it| it.to_string()),
                        tid,
                        function: self.names[name].to_string(),
                        overlap_ps: overlap,
                        gaps: n,
                    });
                }
            }
        }
        for (plane, mut rows) in planes.iter_mut().zip(rows) {
            rows.sort_by(|a, b| {
                (b.overlap_ps, &a.thread, &a.function).cmp(&(a.overlap_ps, &b.thread, &b.function))
            });
            plane.idle.rows = rows;
            plane.idle.out_of_order = self.out_of_order;
        }
    }
}

impl EventSink for IdleExplainer {
    /// Args do not matter here: taking them apart costs nothing.
    fn takes_split_args(&self) -> bool {
        true
    }

    fn split_event(&mut self, event: &Event<'_>, _shared: SharedArgs<'_>) {
        self.event(event);
    }

    fn event(&mut self, event: &Event<'_>) {
        match event.phase {
            Phase::Metadata => {
                let Some(ArgValue::Str(name)) = event.arg("name") else {
                    return;
                };
                match event.name {
                    "process_name" if name == HOST_PLANE => self.host_pid = Some(event.pid),
                    "thread_name" if Some(event.pid) == self.host_pid => {
                        self.name_thread(event.tid, name);
                    }
                    _ => {}
                }
            }
            Phase::Complete if Some(event.pid) == self.host_pid => {
                if let (Some(ts), Some(dur)) = (event.ts, event.dur) {
                    self.host_event(event.tid, event.name, ts, ts.saturating_add(dur.max(0)));
                }
            }
            _ => {}
        }
    }
}
