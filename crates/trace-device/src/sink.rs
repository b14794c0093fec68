//! [`DeviceSink`]: one pass over a trace's events, folding device ops into
//! per-op totals as they close.
//!
//! Per device plane, memory is the op, module and step tables and one small
//! record per module execution and per step: nothing per op execution, so
//! it follows the metadata, not the events. (The one exception: ops of a
//! plane whose `Steps` or `XLA Modules` line comes after its op lines in
//! the stream wait, 24 bytes each, until the step boundaries are known.)

use rustc_hash::FxHashMap as HashMap;

use trace_model::{Arg, ArgValue, Event, EventSink, Phase, Ps, SharedArgs};

use crate::host::{HostEvents, IdleExplainer};
use crate::model::{
    Category, Component, DeviceOp, DevicePlane, IdleAttribution, Module, Peaks, Step,
};
use crate::rules::{COMPONENT_RULES, OTHER, component_of};

/// Line names of a device plane, compared exactly as xprof does.
const OPS_LINE: &str = "XLA Ops";
const STEPS_LINE: &str = "Steps";
const MODULES_LINE: &str = "XLA Modules";
const DEVICE_PREFIX: &str = "/device:";
const GPU_PREFIX: &str = "/device:GPU:";
/// The lines of a GPU plane that hold kernels and copies: `Stream #16(Kernel)`,
/// `Stream #17(MemcpyH2D)`, ...
const STREAM_LINE_PREFIX: &str = "Stream #";
const HOST_PLANE: &str = "/host:CPU";

/// HLO categories whose time xprof's duty cycle counts as idle (tsl
/// `IsOffDutyOp`): the device waits on the host or on a megacore sibling.
const OFF_DUTY_CATEGORIES: [&str; 7] = [
    "infeed",
    "outfeed",
    "host send",
    "host send-done",
    "host recv",
    "host recv-done",
    "megacore fusion",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// A TPU's `XLA Ops` line: ops, and the duty cycle's active time.
    XlaOps,
    /// A GPU stream: ops, nesting on their own, outside the duty cycle.
    Stream,
    Steps,
    Modules,
    Other,
}

impl Line {
    /// The line named `name`, on a GPU plane or not.
    fn of(gpu: bool, name: &str) -> Line {
        match name {
            OPS_LINE => Line::XlaOps,
            STEPS_LINE => Line::Steps,
            MODULES_LINE => Line::Modules,
            // A GPU plane has no `XLA Ops` line from the profiler: its
            // kernels and copies run on one line per stream, which xprof
            // reads as ops (each stream nests on its own).
            _ if gpu && name.starts_with(STREAM_LINE_PREFIX) => Line::Stream,
            _ => Line::Other,
        }
    }
}

/// What an op execution is to xprof's duty cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Duty {
    /// Not on an `XLA Ops` line.
    None,
    /// Off duty: it widens the span but is not active time.
    Off,
    Active,
}

#[derive(Clone, Copy, Debug)]
enum Process {
    Device(usize),
    Host,
}

/// The stats of an event the device view reads, from one list of args.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    program_id: Option<u64>,
    symbol_id: Option<i64>,
    group_id: Option<i64>,
    flops: Option<f64>,
    bytes: Option<f64>,
    model_flops: Option<f64>,
    device_offset: Option<i64>,
    device_duration: Option<i64>,
    /// Whether the list names the op (`program_id`, `symbol_id`,
    /// `long_name`, `tf_op`, `hlo_category`): an event's own args that do
    /// cannot use what its shared args say about the op.
    identity: bool,
}

fn int(value: ArgValue<'_>) -> Option<i64> {
    match value {
        ArgValue::Int(v) => Some(v),
        ArgValue::Uint(v) => i64::try_from(v).ok(),
        ArgValue::Float(v) if v.fract() == 0.0 => Some(v as i64),
        ArgValue::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A program id: xprof reads it as an unsigned 64-bit number, whichever
/// way the stat stores it.
fn uint(value: ArgValue<'_>) -> Option<u64> {
    match value {
        ArgValue::Int(v) => Some(v as u64),
        ArgValue::Uint(v) => Some(v),
        ArgValue::Float(v) if v.fract() == 0.0 && v >= 0.0 => Some(v as u64),
        ArgValue::Str(s) => {
            let s = s.trim();
            s.parse()
                .ok()
                .or_else(|| s.parse::<i64>().ok().map(|it| it as u64))
        }
        _ => None,
    }
}

fn float(value: ArgValue<'_>) -> Option<f64> {
    match value {
        ArgValue::Int(v) => Some(v as f64),
        ArgValue::Uint(v) => Some(v as f64),
        ArgValue::Float(v) => Some(v),
        ArgValue::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Stats {
    /// One walk over `args`; a key met twice takes its first value, as
    /// [`Event::arg`] does.
    fn read(args: &[Arg<'_>]) -> Stats {
        let mut stats = Stats::default();
        for arg in args {
            // Length and first byte pick the one key worth comparing.
            let key = arg.key;
            match (key.len(), key.as_bytes().first()) {
                (10, Some(b'p')) if key == "program_id" => {
                    stats.identity = true;
                    stats.program_id = stats.program_id.or(uint(arg.value));
                }
                (9, Some(b's')) if key == "symbol_id" => {
                    stats.identity = true;
                    stats.symbol_id = stats.symbol_id.or(int(arg.value));
                }
                (9, Some(b'l')) if key == "long_name" => stats.identity = true,
                (5, Some(b't')) if key == "tf_op" => stats.identity = true,
                (12, Some(b'h')) if key == "hlo_category" => stats.identity = true,
                (8, Some(b'g')) if key == "group_id" => {
                    stats.group_id = stats.group_id.or(int(arg.value));
                }
                (5, Some(b'f')) if key == "flops" => stats.flops = stats.flops.or(float(arg.value)),
                (14, Some(b'b')) if key == "bytes_accessed" => {
                    stats.bytes = stats.bytes.or(float(arg.value));
                }
                (11, Some(b'm')) if key == "model_flops" => {
                    stats.model_flops = stats.model_flops.or(float(arg.value));
                }
                (16, Some(b'd')) if key == "device_offset_ps" => {
                    stats.device_offset = stats.device_offset.or(int(arg.value));
                }
                (18, Some(b'd')) if key == "device_duration_ps" => {
                    stats.device_duration = stats.device_duration.or(int(arg.value));
                }
                _ => {}
            }
        }
        stats
    }

    /// `self`, an event's own stats, over `shared`, its metadata's.
    fn over(self, shared: &Stats) -> Stats {
        Stats {
            program_id: self.program_id.or(shared.program_id),
            symbol_id: self.symbol_id.or(shared.symbol_id),
            group_id: self.group_id.or(shared.group_id),
            flops: self.flops.or(shared.flops),
            bytes: self.bytes.or(shared.bytes),
            model_flops: self.model_flops.or(shared.model_flops),
            device_offset: self.device_offset.or(shared.device_offset),
            device_duration: self.device_duration.or(shared.device_duration),
            identity: self.identity || shared.identity,
        }
    }
}

/// No stats: what events without shared args share.
const NO_STATS: Stats = Stats {
    program_id: None,
    symbol_id: None,
    group_id: None,
    flops: None,
    bytes: None,
    model_flops: None,
    device_offset: None,
    device_duration: None,
    identity: false,
};

/// The text arg `key` of an event: among its own args first, then its
/// shared ones.
fn text<'a>(own: &[Arg<'a>], shared: &[Arg<'a>], key: &str) -> &'a str {
    match own
        .iter()
        .chain(shared)
        .find(|it| it.key == key)
        .map(|it| it.value)
    {
        Some(ArgValue::Str(s)) => s,
        _ => "",
    }
}

/// What the shared args of one id say, worked out once.
#[derive(Clone, Copy, Debug)]
struct Shared {
    stats: Stats,
    /// The op (on an op line) or module (on the modules line) these args
    /// name, once an event has asked; `u32::MAX` before.
    index: u32,
    /// Whether `hlo_category` makes the op off duty for the duty cycle.
    off_duty_category: bool,
    custom_call: bool,
}

/// An op execution as it arrives: both clocks.
#[derive(Clone, Copy, Debug)]
struct Arrival {
    /// Host-synchronised start and duration: the order xprof sorts a line
    /// by, and the clock shared with module runs and steps.
    host_start: Ps,
    host_dur: Ps,
    /// Device-clock interval: what nests, and what the times are.
    start: Ps,
    end: Ps,
    op: u32,
    group: Option<i64>,
    /// The step boundary (a `Steps` event or a module run) whose host
    /// interval holds `host_start`, `u32::MAX` for none, `UNKNOWN` when the
    /// boundaries were not read yet.
    bound: u32,
}

const UNKNOWN: u32 = u32::MAX - 1;

/// An op execution whose children may still come.
#[derive(Clone, Copy, Debug)]
struct Open {
    arrival: Arrival,
    children: Ps,
    root: bool,
}

/// The open ops of one op line, the ops that share the latest host start
/// (xprof puts the longest first), and where the line's order stands.
#[derive(Debug)]
struct OpsLine {
    tid: u64,
    last_host_start: Ps,
    /// The first op with the latest host start, held until a later start
    /// shows whether others share it ...
    held: Option<Arrival>,
    /// ... and the others that do.
    ties: Vec<Arrival>,
    stack: Vec<Open>,
    /// Where the last op fell among the plane's step boundaries.
    cursor: usize,
    /// The host start of the line's first op in this sink.
    first_host_start: Option<Ps>,
    /// Device-clock (start, end) of the first [`ROOT_CAP`] ops that found
    /// the stack empty: the ones an earlier part's open ops may contain
    /// ([`DeviceSink::merge`]).
    roots: Vec<(Ps, Ps)>,
    /// Whether roots were left out of `roots`.
    roots_cut: bool,
}

/// How many roots a line remembers for [`DeviceSink::merge`].
const ROOT_CAP: usize = 4096;

/// How many active intervals of the duty cycle a plane remembers for
/// [`DeviceSink::merge`].
const DUTY_CAP: usize = 4096;

impl OpsLine {
    fn new(tid: u64) -> OpsLine {
        OpsLine {
            tid,
            last_host_start: Ps::MIN,
            held: None,
            ties: Vec::new(),
            stack: Vec::new(),
            cursor: 0,
            first_host_start: None,
            roots: Vec::new(),
            roots_cut: false,
        }
    }

    /// Nests one op execution under the open ones, as xprof's ancestor
    /// stack does on the device clock: ops that do not contain it close.
    #[inline]
    fn nest(&mut self, totals: &mut Totals, arrival: Arrival) {
        while let Some(top) = self.stack.last() {
            let parent = &top.arrival;
            if parent.start <= arrival.start && arrival.end <= parent.end {
                break;
            }
            let top = self.stack.pop().expect("just seen");
            totals.close(top);
        }
        let root = match self.stack.last_mut() {
            Some(parent) => {
                parent.children += arrival.end - arrival.start;
                false
            }
            None => {
                if self.roots.len() < ROOT_CAP {
                    self.roots.push((arrival.start, arrival.end));
                } else {
                    self.roots_cut = true;
                }
                true
            }
        };
        self.stack.push(Open {
            arrival,
            children: 0,
            root,
        });
    }

    /// Nests the held ops, which share one host start, longest first (xprof
    /// sorts a line by host start, then by host duration, descending; a
    /// stable sort keeps file order for equal ones).
    fn flush(&mut self, totals: &mut Totals) {
        let Some(first) = self.held.take() else {
            return;
        };
        if self.ties.is_empty() {
            self.nest(totals, first);
            return;
        }
        let mut ties = std::mem::take(&mut self.ties);
        ties.insert(0, first);
        ties.sort_by_key(|it| std::cmp::Reverse(it.host_dur));
        for arrival in ties.drain(..) {
            self.nest(totals, arrival);
        }
        self.ties = ties;
    }

    /// Takes one op execution in the line's order; returns whether it
    /// started (host-synchronised) before an earlier one.
    #[inline]
    fn arrive(&mut self, totals: &mut Totals, arrival: Arrival) -> bool {
        self.first_host_start.get_or_insert(arrival.host_start);
        let last = self.last_host_start;
        if arrival.host_start == last && self.held.is_some() {
            self.ties.push(arrival);
            return false;
        }
        self.flush(totals);
        self.held = Some(arrival);
        self.last_host_start = last.max(arrival.host_start);
        arrival.host_start < last
    }

    fn close_all(&mut self, totals: &mut Totals) {
        self.flush(totals);
        while let Some(open) = self.stack.pop() {
            totals.close(open);
        }
    }
}

/// Σ self time per `group_id`, with the last group looked up at hand
/// (consecutive ops mostly share one).
#[derive(Debug, Default)]
struct Groups {
    index: HashMap<i64, u32>,
    compute: Vec<Ps>,
    last: Option<(i64, u32)>,
}

impl Groups {
    #[inline]
    fn add(&mut self, group: i64, ps: Ps) {
        let idx = match self.last {
            Some((last, idx)) if last == group => idx,
            _ => {
                let next = self.compute.len() as u32;
                let idx = *self.index.entry(group).or_insert(next);
                if idx == next {
                    self.compute.push(0);
                }
                self.last = Some((group, idx));
                idx
            }
        };
        self.compute[idx as usize] += ps;
    }

    fn get(&self, group: i64) -> Option<Ps> {
        self.index
            .get(&group)
            .map(|&idx| self.compute[idx as usize])
    }
}

/// What identifies an op: (`program_id`, `symbol_id`), else its full HLO
/// text or name.
#[derive(Clone, Debug)]
enum OpKey {
    Ids(u64, i64),
    Name(Box<str>),
}

/// What closing an op execution adds to, apart from the lines.
#[derive(Debug, Default)]
struct Totals {
    ops: Vec<DeviceOp>,
    /// What identifies each op of `ops`, to join the ops of parts.
    op_keys: Vec<OpKey>,
    busy: Ps,
    op_union: Ps,
    groups: Groups,
    /// The `Steps` events when the plane has a `Steps` line, else the module
    /// runs, in arrival order (host order).
    bounds: Vec<Bound>,
    has_steps_line: bool,
    has_modules_line: bool,
    /// (host start, device start, self) of ops that closed before their
    /// boundaries were read.
    waiting: Vec<(Ps, Ps, Ps)>,
}

impl Totals {
    /// Whether the step boundaries of this plane were read: they come from
    /// the `Steps` line if it has one, else from the module runs.
    fn bounds_pending(&self) -> bool {
        (self.has_steps_line || self.has_modules_line) && self.bounds.is_empty()
    }

    /// The boundary whose host interval holds `host_start`, from `cursor`
    /// on (ops come in host order); notes the first op's clock offset.
    fn find_bound(&mut self, cursor: &mut usize, host_start: Ps, device_start: Ps) -> u32 {
        if self.bounds_pending() {
            return UNKNOWN;
        }
        let bounds = &self.bounds;
        if bounds.is_empty() {
            return u32::MAX;
        }
        if *cursor >= bounds.len() || bounds[*cursor].host_start > host_start {
            *cursor = bounds
                .partition_point(|it| it.host_start <= host_start)
                .saturating_sub(1);
        }
        while *cursor + 1 < bounds.len() && bounds[*cursor + 1].host_start <= host_start {
            *cursor += 1;
        }
        let idx = *cursor;
        // Without a `Steps` line a module run's step lasts until the next
        // run starts.
        let end = match bounds.get(idx + 1) {
            Some(next) if !self.has_steps_line => next.host_start.max(bounds[idx].host_end),
            _ => bounds[idx].host_end,
        };
        let bound = &mut self.bounds[idx];
        let inside =
            bound.host_start <= host_start && (host_start < end || host_start == bound.host_start);
        if !inside {
            return u32::MAX;
        }
        bound
            .first_op_delta
            .get_or_insert(device_start - host_start);
        idx as u32
    }

    #[inline]
    fn close(&mut self, open: Open) {
        let arrival = open.arrival;
        // Children that overlap each other can add up to more than the
        // parent; self time never goes below zero.
        let self_ps = (arrival.end - arrival.start - open.children).max(0);
        self.ops[arrival.op as usize].self_ps += self_ps;
        self.busy += self_ps;
        if open.root {
            self.op_union += arrival.end - arrival.start;
        }
        match (arrival.group, arrival.bound) {
            (Some(group), _) => self.groups.add(group, self_ps),
            (None, UNKNOWN) => self
                .waiting
                .push((arrival.host_start, arrival.start, self_ps)),
            (None, u32::MAX) => {}
            (None, bound) => self.bounds[bound as usize].compute += self_ps,
        }
    }
}

/// A step boundary: a `Steps` event, or a module run when the plane has no
/// `Steps` line.
#[derive(Clone, Debug)]
struct Bound {
    host_start: Ps,
    host_end: Ps,
    /// The device-clock interval, when the event carries it.
    device: Option<(Ps, Ps)>,
    /// Device-clock start minus host start of the first op (in host order)
    /// that starts inside it.
    first_op_delta: Option<Ps>,
    /// Σ self time of the ops without `group_id` that start inside it.
    compute: Ps,
    group: Option<i64>,
}

/// Joins `later`, the same line in the next part of the stream, onto
/// `line`: the later part's roots go, in order, where one pass would have
/// put them, inside `line`'s ops still open; its open ops go on top of
/// those left. Returns whether it could not be done exactly (more roots
/// under an open op than the later part remembered).
fn stitch(
    line: &mut OpsLine,
    mut later: OpsLine,
    totals: &mut Totals,
    out_of_order: &mut u64,
) -> bool {
    if let Some(first) = later.first_host_start
        && first < line.last_host_start
    {
        *out_of_order += 1;
    }
    let n_roots = later.roots.len();
    for (idx, &(start, end)) in later.roots.iter().enumerate() {
        if line.stack.is_empty() {
            break;
        }
        while let Some(top) = line.stack.last() {
            if top.arrival.start <= start && end <= top.arrival.end {
                break;
            }
            let top = line.stack.pop().expect("just seen");
            totals.close(top);
        }
        if let Some(parent) = line.stack.last_mut() {
            parent.children += end - start;
            // The root has a parent after all: it leaves the union of
            // top-level ops, now if it closed, at its close if still open.
            let open = idx + 1 == n_roots
                && !later.roots_cut
                && later.stack.first().is_some_and(|it| {
                    it.root && (it.arrival.start, it.arrival.end) == (start, end)
                });
            if open {
                later.stack[0].root = false;
            } else {
                totals.op_union -= end - start;
            }
        }
    }
    let inexact = !line.stack.is_empty() && later.roots_cut;
    line.stack.append(&mut later.stack);
    line.cursor = later.cursor;
    line.last_host_start = line.last_host_start.max(later.last_host_start);
    if line.first_host_start.is_none() {
        line.first_host_start = later.first_host_start;
        line.roots = later.roots;
        line.roots_cut = later.roots_cut;
    }
    inexact
}

impl Bound {
    fn of_run(run: &ModuleRun) -> Bound {
        Bound {
            host_start: run.host_start,
            host_end: run.host_end,
            device: run.device,
            first_op_delta: None,
            compute: 0,
            group: run.group,
        }
    }
}

#[derive(Debug)]
struct ModuleRun {
    module: u32,
    group: Option<i64>,
    host_start: Ps,
    host_end: Ps,
    device: Option<(Ps, Ps)>,
}

#[derive(Debug)]
struct RawStep {
    name: String,
}

#[derive(Debug, Default)]
struct PlaneAcc {
    name: String,
    device_clock: bool,
    window: Option<(Ps, Ps)>,
    module_ps: Ps,
    /// Duty cycle (host clock): the span of `XLA Ops` and `XLA Modules`
    /// events, the active time swept so far and where it reaches.
    duty_span: Option<(Ps, Ps)>,
    duty_active: Ps,
    duty_reach: Option<Ps>,
    /// Where the active interval the sweep is in started, and the first
    /// [`DUTY_CAP`] intervals it closed: what an earlier part's last active
    /// time may overlap ([`DeviceSink::merge`]).
    duty_open: Ps,
    duty_first: Vec<(Ps, Ps)>,
    /// Set by [`DeviceSink::merge`] when the parts could not be joined
    /// exactly.
    merge_inexact: bool,
    by_ids: HashMap<(u64, i64), u32>,
    by_name: HashMap<Box<str>, u32>,
    lines: Vec<OpsLine>,
    out_of_order: u64,
    modules: Vec<Module>,
    module_ids: HashMap<Box<str>, u32>,
    runs: Vec<ModuleRun>,
    steps: Vec<RawStep>,
    t: Totals,
}

impl PlaneAcc {
    fn widen(&mut self, start: Ps, end: Ps) {
        self.window = Some(match self.window {
            None => (start, end),
            Some((a, b)) => (a.min(start), b.max(end)),
        });
    }

    fn widen_duty(&mut self, start: Ps, end: Ps) {
        self.duty_span = Some(match self.duty_span {
            None => (start, end),
            Some((a, b)) => (a.min(start), b.max(end)),
        });
    }

    /// Adds `[start, end)` to the duty cycle's active time: a sweep that is
    /// exact while intervals come in order of start, as a line's do.
    fn sweep_active(&mut self, start: Ps, end: Ps) {
        if end <= start {
            return;
        }
        match self.duty_reach {
            Some(reach) if start <= reach => {
                if end > reach {
                    self.duty_active += end - reach;
                    self.duty_reach = Some(end);
                }
            }
            reach => {
                if let Some(reach) = reach
                    && self.duty_first.len() < DUTY_CAP
                {
                    self.duty_first.push((self.duty_open, reach));
                }
                self.duty_open = start;
                self.duty_active += end - start;
                self.duty_reach = Some(end);
            }
        }
    }

    /// The op that `stats` (and the texts of `own` and `shared`) name,
    /// created on first sight.
    fn op_index(&mut self, name: &str, stats: &Stats, own: &[Arg<'_>], shared: &[Arg<'_>]) -> u32 {
        let key = stats.program_id.zip(stats.symbol_id);
        if let Some(key) = key
            && let Some(&idx) = self.by_ids.get(&key)
        {
            return idx;
        }
        let long = text(own, shared, "long_name");
        let name_key = if long.is_empty() { name } else { long };
        if key.is_none()
            && let Some(&idx) = self.by_name.get(name_key)
        {
            return idx;
        }
        let idx = self.t.ops.len() as u32;
        let tf_op = text(own, shared, "tf_op");
        self.t.ops.push(DeviceOp {
            name: name.to_owned(),
            long_name: (!long.is_empty()).then(|| long.to_owned()),
            framework_op: tf_op.strip_suffix(':').unwrap_or(tf_op).to_owned(),
            program_id: stats.program_id,
            category: text(own, shared, "hlo_category").to_owned(),
            count: 0,
            total_ps: 0,
            self_ps: 0,
            flops: 0.0,
            bytes_accessed: 0.0,
        });
        match key {
            Some(key) => {
                self.by_ids.insert(key, idx);
                self.t.op_keys.push(OpKey::Ids(key.0, key.1));
            }
            None => {
                self.by_name.insert(name_key.into(), idx);
                self.t.op_keys.push(OpKey::Name(name_key.into()));
            }
        };
        idx
    }

    /// The op of another part's `op` (identified by `key`) in this plane:
    /// its counts added to the one with the same key, or it is added.
    fn absorb_op(&mut self, key: OpKey, op: DeviceOp) -> u32 {
        let found = match &key {
            OpKey::Ids(program, symbol) => self.by_ids.get(&(*program, *symbol)),
            OpKey::Name(name) => self.by_name.get(name),
        };
        if let Some(&idx) = found {
            let acc = &mut self.t.ops[idx as usize];
            acc.count += op.count;
            acc.total_ps += op.total_ps;
            acc.self_ps += op.self_ps;
            acc.flops += op.flops;
            acc.bytes_accessed += op.bytes_accessed;
            return idx;
        }
        let idx = self.t.ops.len() as u32;
        match &key {
            OpKey::Ids(program, symbol) => self.by_ids.insert((*program, *symbol), idx),
            OpKey::Name(name) => self.by_name.insert(name.clone(), idx),
        };
        self.t.ops.push(op);
        self.t.op_keys.push(key);
        idx
    }

    fn module_index(&mut self, name: &str, program_id: Option<u64>) -> u32 {
        if let Some(&idx) = self.module_ids.get(name) {
            return idx;
        }
        let idx = self.modules.len() as u32;
        self.modules.push(Module {
            name: name.to_owned(),
            program_id,
            count: 0,
            total_ps: 0,
        });
        self.module_ids.insert(name.into(), idx);
        idx
    }

    fn line_index(&mut self, tid: u64) -> usize {
        match self.lines.iter().position(|it| it.tid == tid) {
            Some(idx) => idx,
            None => {
                self.lines.push(OpsLine::new(tid));
                self.lines.len() - 1
            }
        }
    }

    /// One op execution: `host` and `device` are (start, duration) on
    /// each clock (the same when the event has no device clock).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn op_event(
        &mut self,
        tid: u64,
        host: (Ps, Ps),
        device: (Ps, Ps),
        op: u32,
        numbers: (f64, f64),
        group: Option<i64>,
        duty: Duty,
    ) {
        let (start, dur) = device;
        let end = start + dur;
        self.widen(start, end);
        if duty != Duty::None {
            self.widen_duty(host.0, host.0 + host.1);
            if duty == Duty::Active {
                self.sweep_active(host.0, host.0 + host.1);
            }
        }
        let acc = &mut self.t.ops[op as usize];
        acc.count += 1;
        acc.total_ps += dur;
        acc.flops += numbers.0;
        acc.bytes_accessed += numbers.1;

        let line = self.line_index(tid);
        let line = &mut self.lines[line];
        // The boundary only matters for ops without a group, and for
        // placing boundaries without a device clock on it.
        let bound = if group.is_none() || host != device {
            self.t.find_bound(&mut line.cursor, host.0, start)
        } else {
            u32::MAX
        };
        let arrival = Arrival {
            host_start: host.0,
            host_dur: host.1,
            start,
            end,
            op,
            group,
            bound,
        };
        if line.arrive(&mut self.t, arrival) {
            self.out_of_order += 1;
        }
    }

    fn module_event(
        &mut self,
        module: u32,
        host: (Ps, Ps),
        device: Option<(Ps, Ps)>,
        stats: &Stats,
    ) {
        let dur = device.map_or(host.1, |it| it.1);
        let acc = &mut self.modules[module as usize];
        acc.count += 1;
        acc.total_ps += dur;
        self.module_ps += dur;
        self.widen_duty(host.0, host.0 + host.1);
        let run = ModuleRun {
            module,
            group: stats.group_id,
            host_start: host.0,
            host_end: host.0 + host.1,
            device: device.map(|(s, d)| (s, s + d)),
        };
        if !self.t.has_steps_line {
            self.t.bounds.push(Bound::of_run(&run));
        }
        self.runs.push(run);
    }

    fn step_event(&mut self, name: &str, host: (Ps, Ps), device: Option<(Ps, Ps)>, stats: &Stats) {
        let (start, dur) = device.unwrap_or(host);
        self.widen(start, start + dur);
        self.steps.push(RawStep {
            name: name.to_owned(),
        });
        self.t.bounds.push(Bound {
            host_start: host.0,
            host_end: host.0 + host.1,
            device: device.map(|(s, d)| (s, s + d)),
            first_op_delta: None,
            compute: 0,
            group: stats.group_id,
        });
    }

    /// Closes every open op and assigns the ops that waited for their
    /// step boundaries.
    fn close_all(&mut self) {
        for line in &mut self.lines {
            line.close_all(&mut self.t);
        }
        // None can be pending any more.
        self.settle_bounds();
        let t = &mut self.t;
        let mut waiting = std::mem::take(&mut t.waiting);
        waiting.sort_unstable();
        let mut cursor = 0;
        for (host_start, device_start, self_ps) in waiting {
            let bound = t.find_bound(&mut cursor, host_start, device_start);
            if let Some(bound) = t.bounds.get_mut(bound as usize) {
                bound.compute += self_ps;
            }
        }
    }

    /// Settles which events are the step boundaries once they were read:
    /// a `Steps` line without events leaves the module runs.
    fn settle_bounds(&mut self) {
        if self.steps.is_empty() {
            self.t.has_steps_line = false;
            if self.t.bounds.is_empty() {
                self.t.bounds = self.runs.iter().map(Bound::of_run).collect();
            }
        }
        self.t.has_modules_line &= !self.runs.is_empty();
    }

    /// The gaps between the plane's module runs (host clock), sorted and
    /// disjoint: they depend on the `XLA Modules` line alone.
    fn idle_gaps(&self) -> Vec<(Ps, Ps)> {
        let mut host_runs: Vec<(Ps, Ps)> = self
            .runs
            .iter()
            .map(|it| (it.host_start, it.host_end))
            .collect();
        host_runs.sort_unstable();
        let mut gaps = Vec::new();
        let mut reach = Ps::MIN;
        for (start, end) in host_runs {
            if reach != Ps::MIN && start > reach {
                gaps.push((reach, start));
            }
            reach = reach.max(end);
        }
        gaps
    }

    /// Whether [`DeviceSink::finish`] gives a plane for this one.
    fn has_activity(&self) -> bool {
        !(self.t.ops.is_empty() && self.steps.is_empty() && self.runs.is_empty())
    }

    /// An empty plane for a part: the same name and step boundaries.
    fn for_part(&self) -> PlaneAcc {
        let mut part = PlaneAcc {
            name: self.name.clone(),
            ..PlaneAcc::default()
        };
        part.t.has_steps_line = self.t.has_steps_line;
        part.t.has_modules_line = self.t.has_modules_line;
        part.t.bounds = self
            .t
            .bounds
            .iter()
            .map(|it| Bound {
                first_op_delta: None,
                compute: 0,
                ..it.clone()
            })
            .collect();
        part
    }

    /// Adds what `later`, the same plane in the next part of the stream,
    /// collected, as if its events had come to this plane after its own.
    fn absorb(&mut self, mut later: PlaneAcc) {
        for line in &mut self.lines {
            line.flush(&mut self.t);
        }
        for line in &mut later.lines {
            line.flush(&mut later.t);
        }
        self.device_clock |= later.device_clock;
        if let Some((a, b)) = later.window {
            self.widen(a, b);
        }
        if let Some((a, b)) = later.duty_span {
            self.widen_duty(a, b);
        }
        self.absorb_duty(&later);
        self.out_of_order += later.out_of_order;
        self.merge_inexact |= later.merge_inexact;
        let map: Vec<u32> = later
            .t
            .ops
            .into_iter()
            .zip(later.t.op_keys)
            .map(|(op, key)| self.absorb_op(key, op))
            .collect();
        let t = &mut self.t;
        t.busy += later.t.busy;
        t.op_union += later.t.op_union;
        for (group, idx) in later.t.groups.index {
            t.groups.add(group, later.t.groups.compute[idx as usize]);
        }
        for (mine, theirs) in t.bounds.iter_mut().zip(later.t.bounds) {
            mine.compute += theirs.compute;
            mine.first_op_delta = mine.first_op_delta.or(theirs.first_op_delta);
        }
        t.waiting.extend(later.t.waiting);
        for mut line in later.lines {
            for open in &mut line.stack {
                open.arrival.op = map[open.arrival.op as usize];
            }
            match self.lines.iter().position(|it| it.tid == line.tid) {
                None => self.lines.push(line),
                Some(idx) => {
                    let inexact = stitch(
                        &mut self.lines[idx],
                        line,
                        &mut self.t,
                        &mut self.out_of_order,
                    );
                    self.merge_inexact |= inexact;
                }
            }
        }
    }

    /// The duty cycle's active time of `later` added, less what overlaps
    /// this plane's last active interval.
    fn absorb_duty(&mut self, later: &PlaneAcc) {
        let Some(later_reach) = later.duty_reach else {
            return;
        };
        let Some(reach) = self.duty_reach else {
            self.duty_active = later.duty_active;
            self.duty_reach = Some(later_reach);
            self.duty_open = later.duty_open;
            self.duty_first.clone_from(&later.duty_first);
            return;
        };
        let intervals = later
            .duty_first
            .iter()
            .copied()
            .chain([(later.duty_open, later_reach)]);
        let mut overlap = 0;
        for (a, b) in intervals {
            if a >= reach {
                break;
            }
            overlap += b.min(reach) - a;
        }
        // Intervals left out of `duty_first` lie after its last one.
        if later.duty_first.len() == DUTY_CAP && later.duty_first[DUTY_CAP - 1].1 < reach {
            self.merge_inexact = true;
        }
        self.duty_active += later.duty_active - overlap;
        if later_reach > reach {
            self.duty_open = later.duty_open;
            self.duty_reach = Some(later_reach);
        }
    }

    fn finish(mut self, peaks: Peaks) -> DevicePlane {
        self.close_all();
        let (window_start, window_end) = self.window.unwrap_or((0, 0));
        let steps_from_line = !self.steps.is_empty();
        // Boundaries that carry no device clock are placed on it by the
        // first op that starts in them, else by the last offset seen.
        let mut delta = 0;
        let mut device_bounds: Vec<(Ps, Ps)> = Vec::with_capacity(self.t.bounds.len());
        for bound in &self.t.bounds {
            let placed = match bound.device {
                Some(it) => it,
                None => {
                    delta = bound.first_op_delta.unwrap_or(delta);
                    (bound.host_start + delta, bound.host_end + delta)
                }
            };
            device_bounds.push(placed);
        }
        let mut order: Vec<usize> = (0..self.t.bounds.len()).collect();
        order.sort_by_key(|&idx| device_bounds[idx].0);
        let run_of_group: HashMap<i64, u32> = self
            .runs
            .iter()
            .filter_map(|it| Some((it.group?, it.module)))
            .collect();
        let mut runs_by_host: Vec<(Ps, u32)> = self
            .runs
            .iter()
            .map(|it| (it.host_start, it.module))
            .collect();
        runs_by_host.sort_unstable();
        let mut steps = Vec::with_capacity(order.len());
        for (pos, &idx) in order.iter().enumerate() {
            let bound = &self.t.bounds[idx];
            let (start, own_end) = device_bounds[idx];
            let end = if steps_from_line {
                own_end
            } else {
                order
                    .get(pos + 1)
                    .map_or(own_end, |&next| device_bounds[next].0)
            };
            let compute =
                bound.compute + bound.group.and_then(|g| self.t.groups.get(g)).unwrap_or(0);
            let module = if steps_from_line {
                let by_time = {
                    let first = runs_by_host.partition_point(|it| it.0 < bound.host_start);
                    runs_by_host
                        .get(first)
                        .filter(|it| it.0 < bound.host_end)
                        .map(|it| it.1)
                };
                bound
                    .group
                    .and_then(|g| run_of_group.get(&g).copied())
                    .or(by_time)
            } else {
                Some(self.runs[idx].module)
            };
            let name = if steps_from_line {
                self.steps[idx].name.clone()
            } else {
                pos.to_string()
            };
            steps.push(Step {
                name,
                start_ps: start - window_start,
                duration_ps: end - start,
                compute_ps: compute,
                program: module.map(|m| self.modules[m as usize].name.clone()),
            });
        }

        let gaps = self.idle_gaps();
        let idle = IdleAttribution {
            gaps: gaps.len() as u64,
            gap_ps: gaps.iter().map(|(s, e)| e - s).sum(),
            spans: gaps,
            rows: Vec::new(),
            out_of_order: 0,
        };

        let mut categories: Vec<Category> = Vec::new();
        let mut components: Vec<Component> = COMPONENT_RULES
            .iter()
            .map(|it| it.component)
            .chain([OTHER])
            .map(|name| Component {
                name,
                count: 0,
                self_ps: 0,
            })
            .collect();
        for op in &self.t.ops {
            match categories.iter_mut().find(|it| it.name == op.category) {
                Some(cat) => {
                    cat.count += op.count;
                    cat.self_ps += op.self_ps;
                }
                None => categories.push(Category {
                    name: op.category.clone(),
                    count: op.count,
                    self_ps: op.self_ps,
                }),
            }
            let name = component_of(&op.framework_op, &op.name, &op.category);
            let comp = components
                .iter_mut()
                .find(|it| it.name == name)
                .expect("every rule has a row");
            comp.count += op.count;
            comp.self_ps += op.self_ps;
        }
        categories.sort_by(|a, b| (b.self_ps, &a.name).cmp(&(a.self_ps, &b.name)));
        self.t.ops.sort_by(|a, b| {
            (b.self_ps, &a.name, a.program_id).cmp(&(a.self_ps, &b.name, b.program_id))
        });
        self.modules
            .sort_by(|a, b| (b.total_ps, &a.name).cmp(&(a.total_ps, &b.name)));

        DevicePlane {
            plane: self.name,
            peaks,
            device_clock: self.device_clock,
            window_ps: window_end - window_start,
            busy_ps: self.t.busy,
            op_union_ps: self.t.op_union,
            module_ps: self.module_ps,
            duty_active_ps: self.duty_active,
            duty_span_ps: self.duty_span.map_or(0, |(a, b)| b - a),
            ops: self.t.ops,
            categories,
            components,
            modules: self.modules,
            steps,
            steps_from_line,
            out_of_order: self.out_of_order,
            idle,
        }
    }
}

/// Collects the device view of a trace; see the crate docs.
///
/// Aligned to 128 bytes, as `trace_analysis::Analyzer` is: the parts of a
/// stream read on several threads sit side by side in one `Vec`, and the
/// fields each part writes per event (the last line and shared args looked
/// up) must not share a cache line with its neighbour's. Unaligned, whether
/// they did depended on where the allocator put the `Vec`: with a longer
/// `argv[0]` the device view of the 168 MB TPU preset took 1.58 s of CPU
/// on two cores instead of 1.02 s.
#[derive(Debug)]
#[repr(align(128))]
pub struct DeviceSink {
    planes: Vec<PlaneAcc>,
    processes: HashMap<u64, Process>,
    lines: HashMap<(u64, u64), Line>,
    peaks: HashMap<String, Peaks>,
    /// Host events kept to explain idle gaps at the end, unless the caller
    /// explains them in a second pass ([`DeviceSink::without_host_events`]).
    host: Option<HostEvents>,
    /// What each id of shared args said: its place in `shared`, with the
    /// last id looked up at hand.
    shared_ids: HashMap<u64, u32>,
    shared: Vec<Shared>,
    last_shared: Option<(u64, u32)>,
    /// The last (pid, tid) looked up and what it is: readers emit events
    /// line by line (XPlane) or mostly so, so this saves two lookups.
    last: Option<((u64, u64), Option<Process>, Line)>,
    /// Whether the `Steps` and `XLA Modules` events were read before (a
    /// part of a stream read in parts): they are then passed over.
    bounds_read: bool,
}

impl Default for DeviceSink {
    fn default() -> DeviceSink {
        DeviceSink::new()
    }
}

impl DeviceSink {
    /// A sink that keeps the host plane's complete events (24 bytes each)
    /// to explain the device's idle gaps in [`DeviceSink::finish`].
    pub fn new() -> DeviceSink {
        DeviceSink {
            planes: Vec::new(),
            processes: HashMap::default(),
            lines: HashMap::default(),
            peaks: HashMap::default(),
            host: Some(HostEvents::default()),
            shared_ids: HashMap::default(),
            shared: Vec::new(),
            last_shared: None,
            last: None,
            bounds_read: false,
        }
    }

    /// A sink for one part of a stream read in parts
    /// (`trace_xplane::read_parts`), made from this one after it read the
    /// stream's metadata and its `Steps` and `XLA Modules` lines (say with
    /// `trace_xplane::read_lines`): the part knows every plane and line
    /// from the start, takes its step boundaries from here, and passes
    /// those lines' events over. It keeps no host events. Join the parts
    /// back with [`DeviceSink::merge`], in stream order.
    pub fn for_part(&mut self) -> DeviceSink {
        for plane in &mut self.planes {
            plane.settle_bounds();
        }
        DeviceSink {
            planes: self.planes.iter().map(PlaneAcc::for_part).collect(),
            processes: self.processes.clone(),
            lines: self.lines.clone(),
            bounds_read: true,
            ..DeviceSink::without_host_events()
        }
    }

    /// Whether a part made by [`DeviceSink::for_part`] uses the events of
    /// the line `line` of the plane `plane`: the op lines of the device
    /// planes. It passes every other line's events over (the host plane's,
    /// the step boundaries it already has, lines it does not read), so a
    /// reader may leave them out of the parts
    /// (`trace_xplane::Stream::read_parts_of_lines`).
    pub fn part_reads_line(plane: &str, line: &str) -> bool {
        plane.starts_with(DEVICE_PREFIX)
            && matches!(
                Line::of(plane.starts_with(GPU_PREFIX), line),
                Line::XlaOps | Line::Stream
            )
    }

    /// Adds what `later`, made by [`DeviceSink::for_part`], collected from
    /// its part, as if its events had come to this sink after its own
    /// (merge the parts in stream order). Self times stay exact unless an
    /// op open at a cut contains more than a few thousand of the later
    /// part's top-level ops ([`DeviceSink::merged_exactly`]).
    pub fn merge(&mut self, later: DeviceSink) {
        for (mine, theirs) in self.planes.iter_mut().zip(later.planes) {
            mine.absorb(theirs);
        }
    }

    /// Whether every [`DeviceSink::merge`] joined its parts exactly; if
    /// not, read the stream again in one pass.
    pub fn merged_exactly(&self) -> bool {
        self.planes.iter().all(|it| !it.merge_inexact)
    }

    /// A sink that keeps nothing per host event: [`DeviceSink::finish`]
    /// leaves the idle attribution's rows empty, and an [`IdleExplainer`]
    /// fed the host events afterwards fills them. Memory then follows the
    /// metadata, not the events.
    pub fn without_host_events() -> DeviceSink {
        DeviceSink {
            host: None,
            ..DeviceSink::new()
        }
    }

    /// Sets the peaks of the plane named `plane` (`/device:TPU:0`).
    pub fn set_peaks(&mut self, plane: &str, peaks: Peaks) {
        self.peaks.insert(plane.to_owned(), peaks);
    }

    /// One [`DevicePlane`] per device plane with `XLA Ops`, `Steps` or
    /// `XLA Modules` events, in the order the trace named them. On a GPU
    /// plane the per-stream lines (`Stream #N(...)`) count as op lines.
    pub fn finish(self) -> Vec<DevicePlane> {
        let mut peaks = self.peaks;
        let mut planes: Vec<DevicePlane> = self
            .planes
            .into_iter()
            .filter(PlaneAcc::has_activity)
            .map(|plane| {
                let p = peaks.remove(&plane.name).unwrap_or_default();
                plane.finish(p)
            })
            .collect();
        if let Some(host) = self.host {
            let mut explainer = IdleExplainer::new(&planes);
            host.replay(&mut explainer);
            explainer.finish(&mut planes);
        }
        planes
    }

    /// An explainer of the idle gaps that [`DeviceSink::finish`] finds,
    /// made before the op lines are read: the gaps lie between module runs,
    /// so they are known once the `XLA Modules` lines were read (as
    /// [`DeviceSink::for_part`] asks). Feed it the host plane's events, on
    /// another core while the parts read the op lines, and give it to
    /// [`DeviceSink::finish_explained`] of this sink, without host events.
    pub fn idle_explainer(&self) -> IdleExplainer {
        IdleExplainer::of_gaps(self.planes.iter().map(PlaneAcc::idle_gaps).collect())
    }

    /// [`DeviceSink::finish`], with the idle gaps explained by `explainer`
    /// (from [`DeviceSink::idle_explainer`] of this sink).
    pub fn finish_explained(self, explainer: IdleExplainer) -> Vec<DevicePlane> {
        let mut peaks = self.peaks;
        let keep: Vec<bool> = self.planes.iter().map(PlaneAcc::has_activity).collect();
        let mut planes: Vec<DevicePlane> = self
            .planes
            .into_iter()
            .map(|plane| {
                let p = peaks.remove(&plane.name).unwrap_or_default();
                plane.finish(p)
            })
            .collect();
        explainer.finish(&mut planes);
        planes
            .into_iter()
            .zip(keep)
            .filter_map(|(plane, keep)| keep.then_some(plane))
            .collect()
    }

    fn metadata(&mut self, event: &Event<'_>) {
        self.last = None;
        let Some(ArgValue::Str(name)) = event.arg("name") else {
            return;
        };
        match event.name {
            "process_name" => {
                if name.starts_with(DEVICE_PREFIX) {
                    if self.processes.contains_key(&event.pid) {
                        return;
                    }
                    self.planes.push(PlaneAcc {
                        name: name.to_owned(),
                        ..PlaneAcc::default()
                    });
                    self.processes
                        .insert(event.pid, Process::Device(self.planes.len() - 1));
                } else if name == HOST_PLANE {
                    self.processes.insert(event.pid, Process::Host);
                }
            }
            "thread_name" => {
                let plane = match self.processes.get(&event.pid) {
                    Some(Process::Device(idx)) => Some(*idx),
                    _ => None,
                };
                let gpu = plane.is_some_and(|idx| self.planes[idx].name.starts_with(GPU_PREFIX));
                let line = Line::of(gpu, name);
                if let Some(idx) = plane {
                    let acc = &mut self.planes[idx];
                    acc.t.has_steps_line |= line == Line::Steps;
                    acc.t.has_modules_line |= line == Line::Modules;
                }
                self.lines.insert((event.pid, event.tid), line);
                if let (Some(Process::Host), Some(host)) =
                    (self.processes.get(&event.pid), self.host.as_mut())
                {
                    host.name_thread(event.tid, name);
                }
            }
            _ => {}
        }
    }

    /// What the event's process and line are, from the last lookup when it
    /// was the same line.
    #[inline]
    fn locate(&mut self, pid: u64, tid: u64) -> (Option<Process>, Line) {
        let key = (pid, tid);
        match self.last {
            Some((last, process, line)) if last == key => (process, line),
            _ => {
                let process = self.processes.get(&pid).copied();
                let line = self.lines.get(&key).copied().unwrap_or(Line::Other);
                self.last = Some((key, process, line));
                (process, line)
            }
        }
    }

    /// Where what the shared args of `shared.id` say is kept, worked out
    /// on first sight.
    #[inline]
    fn shared_slot(&mut self, shared: &SharedArgs<'_>) -> usize {
        if let Some((id, slot)) = self.last_shared
            && id == shared.id
        {
            return slot as usize;
        }
        let slot = match self.shared_ids.get(&shared.id) {
            Some(&slot) => slot,
            None => {
                let category = text(&[], shared.args, "hlo_category");
                self.shared.push(Shared {
                    stats: Stats::read(shared.args),
                    index: u32::MAX,
                    off_duty_category: OFF_DUTY_CATEGORIES.contains(&category),
                    custom_call: category == "custom-call",
                });
                let slot = self.shared.len() as u32 - 1;
                self.shared_ids.insert(shared.id, slot);
                slot
            }
        };
        self.last_shared = Some((shared.id, slot));
        slot as usize
    }

    /// One complete event of a device plane or of the host plane, its own
    /// args in `event.args` and the args it shares with others in `shared`.
    #[inline]
    fn complete(&mut self, event: &Event<'_>, shared: Option<&SharedArgs<'_>>) {
        let (Some(ts), Some(dur)) = (event.ts, event.dur) else {
            return;
        };
        let (process, line) = self.locate(event.pid, event.tid);
        let plane = match process {
            Some(Process::Device(idx)) => idx,
            Some(Process::Host) => {
                if let Some(host) = self.host.as_mut() {
                    host.push(event.tid, event.name, ts, dur);
                }
                return;
            }
            None => return,
        };
        if line == Line::Other || self.bounds_read && matches!(line, Line::Steps | Line::Modules) {
            return;
        }
        let own = Stats::read(event.args);
        let slot = shared.map(|it| self.shared_slot(it));
        let cached = slot.map(|it| &self.shared[it]);
        let shared_stats = cached.map_or(&NO_STATS, |it| &it.stats);
        let shared_args = shared.map_or(&[][..], |it| it.args);
        let host = (ts, dur);
        let device = own
            .device_offset
            .or(shared_stats.device_offset)
            .zip(own.device_duration.or(shared_stats.device_duration));
        let group = own.group_id.or(shared_stats.group_id);
        let acc = &mut self.planes[plane];
        if device.is_some() {
            acc.device_clock = true;
        }
        match line {
            Line::XlaOps | Line::Stream => {
                // The op: from the cache when the shared args name it and
                // the event's own do not.
                let reuse = cached
                    .filter(|_| !own.identity)
                    .map(|it| (it.index, it.off_duty_category, it.custom_call));
                let op = match reuse {
                    Some((index, ..)) if index != u32::MAX => index,
                    _ => {
                        let stats = own.over(shared_stats);
                        let idx = acc.op_index(event.name, &stats, event.args, shared_args);
                        if let (Some(_), Some(slot)) = (reuse, slot) {
                            self.shared[slot].index = idx;
                        }
                        idx
                    }
                };
                let shared_stats = slot.map_or(&NO_STATS, |it| &self.shared[it].stats);
                let (off_category, custom_call) = match reuse {
                    Some((_, off, custom)) => (off, custom),
                    None => {
                        let category = text(event.args, shared_args, "hlo_category");
                        (
                            OFF_DUTY_CATEGORIES.contains(&category),
                            category == "custom-call",
                        )
                    }
                };
                let duty = if line != Line::XlaOps {
                    Duty::None
                } else if off_category
                    || custom_call && own.model_flops.or(shared_stats.model_flops) == Some(0.0)
                {
                    Duty::Off
                } else {
                    Duty::Active
                };
                let numbers = (
                    own.flops.or(shared_stats.flops).unwrap_or(0.0),
                    own.bytes.or(shared_stats.bytes).unwrap_or(0.0),
                );
                let acc = &mut self.planes[plane];
                acc.op_event(
                    event.tid,
                    host,
                    device.unwrap_or(host),
                    op,
                    numbers,
                    group,
                    duty,
                );
            }
            Line::Steps => {
                let stats = own.over(shared_stats);
                acc.step_event(event.name, host, device, &stats);
            }
            Line::Modules => {
                let stats = own.over(shared_stats);
                let module = acc.module_index(event.name, stats.program_id);
                acc.module_event(module, host, device, &stats);
            }
            Line::Other => {}
        }
    }
}

impl EventSink for DeviceSink {
    fn event(&mut self, event: &Event<'_>) {
        match event.phase {
            Phase::Metadata => self.metadata(event),
            Phase::Complete => self.complete(event, None),
            _ => {}
        }
    }

    fn takes_split_args(&self) -> bool {
        true
    }

    fn split_event(&mut self, event: &Event<'_>, shared: SharedArgs<'_>) {
        match event.phase {
            Phase::Metadata => self.metadata(event),
            Phase::Complete => self.complete(event, Some(&shared)),
            _ => {}
        }
    }
}
