//! Host events kept for explaining device idle gaps, and the attribution
//! itself: for each host thread, which innermost event ran during the gaps.

use rustc_hash::FxHashMap as HashMap;

use trace_model::Ps;

use crate::model::{HostIdleRow, IdleAttribution};

/// One host complete event, 24 bytes.
#[derive(Clone, Copy, Debug)]
struct HostEvent {
    thread: u32,
    name: u32,
    start: Ps,
    end: Ps,
}

/// The host plane's complete events, names interned.
#[derive(Debug, Default)]
pub(crate) struct HostEvents {
    names: Vec<Box<str>>,
    name_ids: HashMap<Box<str>, u32>,
    threads: Vec<u64>,
    thread_ids: HashMap<u64, u32>,
    thread_names: HashMap<u64, Box<str>>,
    events: Vec<HostEvent>,
}

impl HostEvents {
    pub(crate) fn name_thread(&mut self, tid: u64, name: &str) {
        self.thread_names.insert(tid, name.into());
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

    /// Sorts the events once, by thread then start, outer events first.
    pub(crate) fn sort(&mut self) {
        self.events
            .sort_unstable_by_key(|it| (it.thread, it.start, std::cmp::Reverse(it.end)));
    }

    /// Attributes `gaps` (sorted, disjoint `[start, end)` intervals) to the
    /// innermost host event running on each thread. Call [`Self::sort`] first.
    pub(crate) fn attribute(&self, gaps: &[(Ps, Ps)]) -> IdleAttribution {
        let gap_ps = gaps.iter().map(|(s, e)| e - s).sum();
        // (thread, name) -> (overlap, gaps, last gap index counted).
        let mut acc: HashMap<(u32, u32), (Ps, u64, usize)> = HashMap::default();
        let mut add = |thread: u32, name: u32, a: Ps, b: Ps, first_gap: &mut usize| {
            while *first_gap < gaps.len() && gaps[*first_gap].1 <= a {
                *first_gap += 1;
            }
            let mut idx = *first_gap;
            while idx < gaps.len() && gaps[idx].0 < b {
                let overlap = b.min(gaps[idx].1) - a.max(gaps[idx].0);
                if overlap > 0 {
                    let entry = acc.entry((thread, name)).or_insert((0, 0, usize::MAX));
                    entry.0 += overlap;
                    if entry.2 != idx {
                        entry.1 += 1;
                        entry.2 = idx;
                    }
                }
                idx += 1;
            }
        };
        let mut idx = 0;
        while idx < self.events.len() {
            let thread = self.events[idx].thread;
            let mut first_gap = 0;
            // Open events (end, name); `now` is where the innermost one's own
            // time resumes.
            let mut stack: Vec<(Ps, u32)> = Vec::new();
            let mut now = Ps::MIN;
            while idx < self.events.len() && self.events[idx].thread == thread {
                let ev = self.events[idx];
                while let Some(&(end, name)) = stack.last() {
                    if end > ev.start {
                        break;
                    }
                    add(thread, name, now, end, &mut first_gap);
                    now = now.max(end);
                    stack.pop();
                }
                if let Some(&(_, name)) = stack.last() {
                    add(thread, name, now, ev.start, &mut first_gap);
                }
                now = now.max(ev.start);
                stack.push((ev.end, ev.name));
                idx += 1;
            }
            while let Some((end, name)) = stack.pop() {
                add(thread, name, now, end, &mut first_gap);
                now = now.max(end);
            }
        }
        let mut rows: Vec<HostIdleRow> = acc
            .into_iter()
            .map(|((thread, name), (overlap, n, _))| {
                let tid = self.threads[thread as usize];
                HostIdleRow {
                    thread: self
                        .thread_names
                        .get(&tid)
                        .map_or_else(|| format!("thread {tid}"), |it| it.to_string()),
                    tid,
                    function: self.names[name as usize].to_string(),
                    overlap_ps: overlap,
                    gaps: n,
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            (b.overlap_ps, &a.thread, &a.function).cmp(&(a.overlap_ps, &b.thread, &b.function))
        });
        IdleAttribution {
            gaps: gaps.len() as u64,
            gap_ps,
            rows,
        }
    }
}
