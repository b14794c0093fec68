//! What to export and into how many files: [`Selection`] and [`Exporter`].

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use trace_model::{Arg, ArgValue, Event, EventSink, Phase, Ps};

use crate::Error;
use crate::json::{ChromeJson, format_event};

/// Which events to write. Metadata events (`ph` `M`: process and thread
/// names) are always written, except thread names of threads left out by
/// [`Selection::threads`] and of threads without events written: a
/// thread's name is written just before its first event.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Keep events that end after this time (relative picoseconds), or
    /// start at it.
    pub from: Option<Ps>,
    /// Keep events that start at or before this time.
    pub to: Option<Ps>,
    /// Keep events of threads whose name, or whose process's name, contains
    /// this text, as known when the event arrives (readers give names before
    /// events).
    pub threads: Option<String>,
    /// Start a new chunk after this many events other than metadata; every
    /// chunk begins with the metadata events seen so far.
    pub split_events: Option<u64>,
}

impl Selection {
    fn in_window(&self, event: &Event<'_>) -> bool {
        let Some(start) = event.ts else {
            return true;
        };
        let end = start.saturating_add(event.dur.unwrap_or(0).max(0));
        // An event that merely ends where the window starts is outside it.
        let after_from = |from: Ps| end > from || start >= from;
        self.from.is_none_or(after_from) && self.to.is_none_or(|to| start <= to)
    }
}

/// What an export wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Files written, numbered from 0.
    pub chunks: u32,
    /// Events written other than metadata, over all chunks.
    pub events: u64,
    /// Events left out by the selection.
    pub left_out: u64,
}

/// An [`EventSink`] that writes the selected events into one or more
/// chunks. `open(n)` gives the writer of chunk `n` (from 0); `close` is
/// called with each writer once its chunk is complete (to finish a gzip
/// stream, say). Nothing is kept per event: only the metadata events of
/// processes and of threads that have events, to begin each chunk with,
/// and the latest name of each thread whose first event has not come yet
/// (so memory follows the threads, never the metadata events: a trace of
/// millions of empty lines with one id keeps one name).
pub struct Exporter<W, O, C>
where
    W: Write,
    O: FnMut(u32) -> io::Result<W>,
    C: FnMut(W) -> io::Result<()>,
{
    selection: Selection,
    open: O,
    close: C,
    current: Option<ChromeJson<W>>,
    in_chunk: u64,
    /// Every metadata event written, formatted, to begin later chunks with.
    metadata: Vec<Vec<u8>>,
    /// The latest thread name of threads without an event written yet.
    pending_names: HashMap<(u64, u64), String>,
    /// Threads with an event written.
    started: HashSet<(u64, u64)>,
    process_names: HashMap<u64, String>,
    thread_names: HashMap<(u64, u64), String>,
    /// Whether a thread's events are kept, decided once per thread while
    /// its names stay the same.
    keep: HashMap<(u64, u64), bool>,
    last: Option<((u64, u64), bool)>,
    summary: Summary,
    error: Option<Error>,
}

impl<W, O, C> Exporter<W, O, C>
where
    W: Write,
    O: FnMut(u32) -> io::Result<W>,
    C: FnMut(W) -> io::Result<()>,
{
    pub fn new(selection: Selection, open: O, close: C) -> Self {
        Exporter {
            selection,
            open,
            close,
            current: None,
            in_chunk: 0,
            metadata: Vec::new(),
            pending_names: HashMap::new(),
            started: HashSet::new(),
            process_names: HashMap::new(),
            thread_names: HashMap::new(),
            keep: HashMap::new(),
            last: None,
            summary: Summary::default(),
            error: None,
        }
    }

    /// Completes the last chunk (or writes an empty one when nothing was
    /// selected) and reports what was written.
    pub fn finish(mut self) -> Result<Summary, Error> {
        if self.error.is_none() && self.current.is_none() {
            self.start_chunk();
        }
        self.end_chunk();
        match self.error {
            Some(err) => Err(err),
            None => Ok(self.summary),
        }
    }

    fn start_chunk(&mut self) {
        let chunk = self.summary.chunks;
        match (self.open)(chunk) {
            Ok(out) => {
                let mut json = ChromeJson::new(out);
                for meta in &self.metadata {
                    json.write_formatted(meta);
                }
                self.current = Some(json);
                self.summary.chunks += 1;
                self.in_chunk = 0;
            }
            Err(source) => self.error = Some(Error::Write { chunk, source }),
        }
    }

    fn end_chunk(&mut self) {
        let Some(json) = self.current.take() else {
            return;
        };
        let chunk = self.summary.chunks - 1;
        let res = json.finish().and_then(&mut self.close);
        if let Err(source) = res
            && self.error.is_none()
        {
            self.error = Some(Error::Write { chunk, source });
        }
    }

    fn kept_thread(&mut self, pid: u64, tid: u64) -> bool {
        let Some(pattern) = &self.selection.threads else {
            return true;
        };
        if let Some((key, keep)) = self.last
            && key == (pid, tid)
        {
            return keep;
        }
        let keep = *self.keep.entry((pid, tid)).or_insert_with(|| {
            let matches = |name: Option<&String>| name.is_some_and(|it| it.contains(pattern));
            matches(self.thread_names.get(&(pid, tid))) || matches(self.process_names.get(&pid))
        });
        self.last = Some(((pid, tid), keep));
        keep
    }

    fn metadata(&mut self, event: &Event<'_>) {
        // Names are only needed to choose threads by name.
        if self.selection.threads.is_some()
            && let Some(ArgValue::Str(name)) = event.arg("name")
        {
            match event.name {
                "process_name" => {
                    self.process_names.insert(event.pid, name.to_owned());
                }
                "thread_name" => {
                    self.thread_names
                        .insert((event.pid, event.tid), name.to_owned());
                }
                _ => {}
            }
            self.keep.clear();
            self.last = None;
        }
        if event.name == "thread_name" && !self.kept_thread(event.pid, event.tid) {
            self.summary.left_out += 1;
            return;
        }
        let key = (event.pid, event.tid);
        if event.name == "thread_name"
            && !self.started.contains(&key)
            && let Some(ArgValue::Str(name)) = event.arg("name")
        {
            // Written with the thread's first event, if it has one; a name
            // given again costs nothing.
            match self.pending_names.get_mut(&key) {
                Some(pending) if pending == name => {}
                Some(pending) => name.clone_into(pending),
                None => {
                    self.pending_names.insert(key, name.to_owned());
                }
            }
            return;
        }
        let mut text = Vec::new();
        format_event(&mut text, event);
        self.write_metadata(text);
    }

    /// Writes the pending name of a thread that is about to get its first
    /// event.
    fn write_pending_name(&mut self, key: (u64, u64)) {
        let Some(name) = self.pending_names.remove(&key) else {
            return;
        };
        let args = [Arg {
            key: "name",
            value: ArgValue::Str(&name),
        }];
        let mut text = Vec::new();
        format_event(
            &mut text,
            &Event {
                phase: Phase::Metadata,
                name: "thread_name",
                cat: "",
                pid: key.0,
                tid: key.1,
                ts: None,
                dur: None,
                args: &args,
            },
        );
        self.write_metadata(text);
    }

    fn write_metadata(&mut self, text: Vec<u8>) {
        if let Some(json) = &mut self.current {
            json.write_formatted(&text);
        }
        self.metadata.push(text);
    }
}

impl<W, O, C> EventSink for Exporter<W, O, C>
where
    W: Write,
    O: FnMut(u32) -> io::Result<W>,
    C: FnMut(W) -> io::Result<()>,
{
    fn event(&mut self, event: &Event<'_>) {
        if self.error.is_some() {
            return;
        }
        if event.phase == Phase::Metadata {
            self.metadata(event);
            return;
        }
        if !self.selection.in_window(event) || !self.kept_thread(event.pid, event.tid) {
            self.summary.left_out += 1;
            return;
        }
        let full = self
            .selection
            .split_events
            .is_some_and(|n| self.in_chunk >= n.max(1));
        if full {
            self.end_chunk();
        }
        if self.current.is_none() {
            self.start_chunk();
        }
        let key = (event.pid, event.tid);
        if !self.started.contains(&key) {
            self.started.insert(key);
            self.write_pending_name(key);
        }
        if let Some(json) = &mut self.current {
            json.write_event(event);
            self.in_chunk += 1;
            self.summary.events += 1;
        }
    }
}
