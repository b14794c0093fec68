//! [`DeviceSink`]: one pass over a trace's events, folding device ops into
//! per-op totals as they close.

use rustc_hash::FxHashMap as HashMap;

use trace_model::{ArgValue, Event, EventSink, Phase, Ps};

use crate::host::HostEvents;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    Ops,
    Steps,
    Modules,
    Other,
}

#[derive(Clone, Copy, Debug)]
enum Process {
    Device(usize),
    Host,
}

/// An op execution whose children may still come.
#[derive(Clone, Copy, Debug)]
struct Open {
    start: Ps,
    end: Ps,
    children: Ps,
    op: u32,
    group: Option<i64>,
    top: bool,
}

/// The open ops of one ops line and the latest start seen on it.
#[derive(Debug)]
struct OpsLine {
    tid: u64,
    last_start: Ps,
    stack: Vec<Open>,
}

#[derive(Debug)]
struct ModuleRun {
    module: u32,
    group: Option<i64>,
    start: Ps,
    end: Ps,
    /// Host-synchronised interval, to compare with host events.
    host_start: Ps,
    host_end: Ps,
}

#[derive(Debug)]
struct RawStep {
    name: String,
    group: Option<i64>,
    start: Ps,
    end: Ps,
}

#[derive(Debug, Default)]
struct PlaneAcc {
    name: String,
    device_clock: bool,
    window: Option<(Ps, Ps)>,
    busy: Ps,
    op_union: Ps,
    module_ps: Ps,
    ops: Vec<DeviceOp>,
    by_ids: HashMap<(i64, i64), u32>,
    by_name: HashMap<Box<str>, u32>,
    /// One stack of open ops per ops line.
    stacks: Vec<OpsLine>,
    out_of_order: u64,
    modules: Vec<Module>,
    module_ids: HashMap<Box<str>, u32>,
    runs: Vec<ModuleRun>,
    steps: Vec<RawStep>,
    group_compute: HashMap<i64, Ps>,
    /// (start, self) of ops without a `group_id`.
    ungrouped: Vec<(Ps, Ps)>,
}

/// The numeric stats of a device event, read in one walk over its args.
#[derive(Default)]
struct Stats {
    program_id: Option<i64>,
    symbol_id: Option<i64>,
    group_id: Option<i64>,
    flops: Option<f64>,
    bytes: Option<f64>,
    device_offset: Option<i64>,
    device_duration: Option<i64>,
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

fn float(value: ArgValue<'_>) -> Option<f64> {
    match value {
        ArgValue::Int(v) => Some(v as f64),
        ArgValue::Uint(v) => Some(v as f64),
        ArgValue::Float(v) => Some(v),
        ArgValue::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text<'a>(event: &Event<'a>, key: &str) -> &'a str {
    match event.arg(key) {
        Some(ArgValue::Str(s)) => s,
        _ => "",
    }
}

impl Stats {
    fn read(event: &Event<'_>) -> Stats {
        let mut stats = Stats::default();
        for arg in event.args {
            match arg.key {
                "program_id" => stats.program_id = int(arg.value),
                "symbol_id" => stats.symbol_id = int(arg.value),
                "group_id" => stats.group_id = int(arg.value),
                "flops" => stats.flops = float(arg.value),
                "bytes_accessed" => stats.bytes = float(arg.value),
                "device_offset_ps" => stats.device_offset = int(arg.value),
                "device_duration_ps" => stats.device_duration = int(arg.value),
                _ => {}
            }
        }
        stats
    }
}

impl PlaneAcc {
    fn widen(&mut self, start: Ps, end: Ps) {
        self.window = Some(match self.window {
            None => (start, end),
            Some((a, b)) => (a.min(start), b.max(end)),
        });
    }

    fn op_index(&mut self, event: &Event<'_>, stats: &Stats) -> u32 {
        let key = stats.program_id.zip(stats.symbol_id);
        if let Some(key) = key
            && let Some(&idx) = self.by_ids.get(&key)
        {
            return idx;
        }
        let long = text(event, "long_name");
        let name_key = if long.is_empty() { event.name } else { long };
        if key.is_none()
            && let Some(&idx) = self.by_name.get(name_key)
        {
            return idx;
        }
        let idx = self.ops.len() as u32;
        let tf_op = text(event, "tf_op");
        self.ops.push(DeviceOp {
            name: event.name.to_owned(),
            long_name: (!long.is_empty()).then(|| long.to_owned()),
            framework_op: tf_op.strip_suffix(':').unwrap_or(tf_op).to_owned(),
            program_id: stats.program_id,
            category: text(event, "hlo_category").to_owned(),
            count: 0,
            total_ps: 0,
            self_ps: 0,
            flops: 0.0,
            bytes_accessed: 0.0,
        });
        match key {
            Some(key) => self.by_ids.insert(key, idx),
            None => self.by_name.insert(name_key.into(), idx),
        };
        idx
    }

    fn close(&mut self, open: Open) {
        let self_ps = open.end - open.start - open.children;
        self.ops[open.op as usize].self_ps += self_ps;
        self.busy += self_ps;
        if open.top {
            self.op_union += open.end - open.start;
        }
        match open.group {
            Some(group) => *self.group_compute.entry(group).or_insert(0) += self_ps,
            None => self.ungrouped.push((open.start, self_ps)),
        }
    }

    fn op_event(&mut self, event: &Event<'_>, tid: u64, start: Ps, dur: Ps, stats: &Stats) {
        let end = start + dur;
        self.widen(start, end);
        let op = self.op_index(event, stats);
        let acc = &mut self.ops[op as usize];
        acc.count += 1;
        acc.total_ps += dur;
        acc.flops += stats.flops.unwrap_or(0.0);
        acc.bytes_accessed += stats.bytes.unwrap_or(0.0);

        let line = match self.stacks.iter().position(|it| it.tid == tid) {
            Some(idx) => idx,
            None => {
                self.stacks.push(OpsLine {
                    tid,
                    last_start: Ps::MIN,
                    stack: Vec::new(),
                });
                self.stacks.len() - 1
            }
        };
        let mut stack = std::mem::take(&mut self.stacks[line].stack);
        if start < self.stacks[line].last_start {
            self.out_of_order += 1;
        }
        self.stacks[line].last_start = self.stacks[line].last_start.max(start);
        let mut new = Open {
            start,
            end,
            children: 0,
            op,
            group: stats.group_id,
            top: false,
        };
        // Close every open op that does not contain this one: those that
        // ended before it starts, and those it only overlaps. An op that
        // starts with this one but ends earlier lies inside it even though
        // it came first: the outermost of them becomes its direct child.
        while let Some(&top) = stack.last() {
            if top.end > start && top.end >= end {
                break;
            }
            let mut top = stack.pop().expect("just seen");
            if top.start == start && top.end > start {
                let inner_of_next = stack
                    .last()
                    .is_some_and(|below| below.start == start && below.end < end);
                if !inner_of_next {
                    let len = top.end - top.start;
                    if let Some(below) = stack.last_mut() {
                        below.children -= len;
                    }
                    new.children += len;
                    top.top = false;
                }
            }
            self.close(top);
        }
        new.top = stack.is_empty();
        if let Some(parent) = stack.last_mut() {
            parent.children += dur;
        }
        stack.push(new);
        self.stacks[line].stack = stack;
    }

    fn module_event(
        &mut self,
        event: &Event<'_>,
        start: Ps,
        dur: Ps,
        host: (Ps, Ps),
        stats: &Stats,
    ) {
        let module = match self.module_ids.get(event.name) {
            Some(&idx) => idx,
            None => {
                let idx = self.modules.len() as u32;
                self.modules.push(Module {
                    name: event.name.to_owned(),
                    program_id: stats.program_id,
                    count: 0,
                    total_ps: 0,
                });
                self.module_ids.insert(event.name.into(), idx);
                idx
            }
        };
        let acc = &mut self.modules[module as usize];
        acc.count += 1;
        acc.total_ps += dur;
        self.module_ps += dur;
        self.runs.push(ModuleRun {
            module,
            group: stats.group_id,
            start,
            end: start + dur,
            host_start: host.0,
            host_end: host.0 + host.1,
        });
    }

    fn finish(mut self, peaks: Peaks, host: &HostEvents) -> DevicePlane {
        let stacks = std::mem::take(&mut self.stacks);
        for line in stacks {
            for open in line.stack.into_iter().rev() {
                self.close(open);
            }
        }
        let (window_start, window_end) = self.window.unwrap_or((0, 0));
        self.runs.sort_by_key(|it| it.start);

        let steps_from_line = !self.steps.is_empty();
        if !steps_from_line {
            for (idx, run) in self.runs.iter().enumerate() {
                let end = self.runs.get(idx + 1).map_or(run.end, |next| next.start);
                self.steps.push(RawStep {
                    name: idx.to_string(),
                    group: run.group,
                    start: run.start,
                    end,
                });
            }
        }
        self.steps.sort_by_key(|it| it.start);
        self.ungrouped.sort_unstable();
        let mut steps = Vec::with_capacity(self.steps.len());
        let mut next_op = 0;
        let mut next_run = 0;
        let run_of_group: HashMap<i64, u32> = self
            .runs
            .iter()
            .filter_map(|it| Some((it.group?, it.module)))
            .collect();
        for raw in &self.steps {
            let mut compute = raw
                .group
                .and_then(|g| self.group_compute.get(&g).copied())
                .unwrap_or(0);
            while next_op < self.ungrouped.len() && self.ungrouped[next_op].0 < raw.start {
                next_op += 1;
            }
            while next_op < self.ungrouped.len() && self.ungrouped[next_op].0 < raw.end {
                compute += self.ungrouped[next_op].1;
                next_op += 1;
            }
            while next_run < self.runs.len() && self.runs[next_run].start < raw.start {
                next_run += 1;
            }
            let by_time = self
                .runs
                .get(next_run)
                .filter(|it| it.start < raw.end)
                .map(|it| it.module);
            let module = raw
                .group
                .and_then(|g| run_of_group.get(&g).copied())
                .or(by_time);
            steps.push(Step {
                name: raw.name.clone(),
                start_ps: raw.start - window_start,
                duration_ps: raw.end - raw.start,
                compute_ps: compute,
                program: module.map(|m| self.modules[m as usize].name.clone()),
            });
        }

        let mut gaps = Vec::new();
        let mut host_runs: Vec<(Ps, Ps)> = self
            .runs
            .iter()
            .map(|it| (it.host_start, it.host_end))
            .collect();
        host_runs.sort_unstable();
        let mut reach = Ps::MIN;
        for (start, end) in host_runs {
            if reach != Ps::MIN && start > reach {
                gaps.push((reach, start));
            }
            reach = reach.max(end);
        }
        let idle = if gaps.is_empty() {
            IdleAttribution::default()
        } else {
            host.attribute(&gaps)
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
        for op in &self.ops {
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
        self.ops.sort_by(|a, b| {
            (b.self_ps, &a.name, a.program_id).cmp(&(a.self_ps, &b.name, b.program_id))
        });
        self.modules
            .sort_by(|a, b| (b.total_ps, &a.name).cmp(&(a.total_ps, &b.name)));

        DevicePlane {
            plane: self.name,
            peaks,
            device_clock: self.device_clock,
            window_ps: window_end - window_start,
            busy_ps: self.busy,
            op_union_ps: self.op_union,
            module_ps: self.module_ps,
            ops: self.ops,
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
#[derive(Debug, Default)]
pub struct DeviceSink {
    planes: Vec<PlaneAcc>,
    processes: HashMap<u64, Process>,
    lines: HashMap<(u64, u64), Line>,
    peaks: HashMap<String, Peaks>,
    host: HostEvents,
    /// The last (pid, tid) looked up and what it is: readers emit events
    /// line by line (XPlane) or mostly so, so this saves two lookups.
    last: Option<((u64, u64), Option<Process>, Line)>,
}

impl DeviceSink {
    pub fn new() -> DeviceSink {
        DeviceSink::default()
    }

    /// Sets the peaks of the plane named `plane` (`/device:TPU:0`).
    pub fn set_peaks(&mut self, plane: &str, peaks: Peaks) {
        self.peaks.insert(plane.to_owned(), peaks);
    }

    /// One [`DevicePlane`] per device plane with `XLA Ops`, `Steps` or
    /// `XLA Modules` events, in the order the trace named them. On a GPU
    /// plane the per-stream lines (`Stream #N(...)`) count as op lines.
    pub fn finish(mut self) -> Vec<DevicePlane> {
        self.host.sort();
        let host = self.host;
        let mut peaks = self.peaks;
        self.planes
            .into_iter()
            .filter(|it| !(it.ops.is_empty() && it.steps.is_empty() && it.runs.is_empty()))
            .map(|plane| {
                let p = peaks.remove(&plane.name).unwrap_or_default();
                plane.finish(p, &host)
            })
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
                let gpu = match self.processes.get(&event.pid) {
                    Some(Process::Device(idx)) => self.planes[*idx].name.starts_with(GPU_PREFIX),
                    _ => false,
                };
                let line = match name {
                    OPS_LINE => Line::Ops,
                    STEPS_LINE => Line::Steps,
                    MODULES_LINE => Line::Modules,
                    // A GPU plane has no `XLA Ops` line from the profiler:
                    // its kernels and copies run on one line per stream,
                    // which xprof reads as ops (each stream nests on its own).
                    _ if gpu && name.starts_with(STREAM_LINE_PREFIX) => Line::Ops,
                    _ => Line::Other,
                };
                self.lines.insert((event.pid, event.tid), line);
                if let Some(Process::Host) = self.processes.get(&event.pid) {
                    self.host.name_thread(event.tid, name);
                }
            }
            _ => {}
        }
    }
}

impl EventSink for DeviceSink {
    fn event(&mut self, event: &Event<'_>) {
        if event.phase == Phase::Metadata {
            self.metadata(event);
            return;
        }
        let (Phase::Complete, Some(ts), Some(dur)) = (event.phase, event.ts, event.dur) else {
            return;
        };
        let key = (event.pid, event.tid);
        let (process, line) = match self.last {
            Some((last, process, line)) if last == key => (process, line),
            _ => {
                let process = self.processes.get(&event.pid).copied();
                let line = self.lines.get(&key).copied().unwrap_or(Line::Other);
                self.last = Some((key, process, line));
                (process, line)
            }
        };
        let plane = match process {
            Some(Process::Device(idx)) => idx,
            Some(Process::Host) => {
                self.host.push(event.tid, event.name, ts, dur);
                return;
            }
            None => return,
        };
        if line == Line::Other {
            return;
        }
        let stats = Stats::read(event);
        let acc = &mut self.planes[plane];
        let (start, dur) = match (stats.device_offset, stats.device_duration) {
            (Some(offset), Some(duration)) => {
                acc.device_clock = true;
                (offset, duration)
            }
            _ => (ts, dur),
        };
        match line {
            Line::Ops => acc.op_event(event, event.tid, start, dur, &stats),
            Line::Steps => {
                acc.widen(start, start + dur);
                acc.steps.push(RawStep {
                    name: event.name.to_owned(),
                    group: stats.group_id,
                    start,
                    end: start + dur,
                });
            }
            Line::Modules => acc.module_event(event, start, dur, (ts, dur), &stats),
            Line::Other => {}
        }
    }
}
