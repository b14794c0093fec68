//! What the device view reports, as plain data. Times are picoseconds.

use trace_model::Ps;

/// A device's peaks, from its plane's stats.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Peaks {
    /// `device_type_string`, e.g. `TPU v6 lite`.
    pub device_type: Option<String>,
    /// `peak_teraflops_per_second`.
    pub tflops_per_s: Option<f64>,
    /// `peak_hbm_bw_gigabytes_per_second`.
    pub hbm_gbytes_per_s: Option<f64>,
}

impl Peaks {
    /// FLOPs per byte at which the roofline turns from memory- to
    /// compute-bound: peak FLOP/s ÷ peak bytes/s.
    pub fn ridge_point(&self) -> Option<f64> {
        match (self.tflops_per_s, self.hbm_gbytes_per_s) {
            (Some(f), Some(b)) if f > 0.0 && b > 0.0 => Some(f * 1e12 / (b * 1e9)),
            _ => None,
        }
    }
}

/// One device operation, aggregated over its executions.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceOp {
    /// The short HLO name (`fusion.27`).
    pub name: String,
    /// The full HLO instruction text, when the trace has it.
    pub long_name: Option<String>,
    /// The framework op path (`tf_op`) without a trailing `:`; empty if none.
    pub framework_op: String,
    /// xprof's program id, an unsigned 64-bit number.
    pub program_id: Option<u64>,
    /// `hlo_category`; empty if none.
    pub category: String,
    pub count: u64,
    pub total_ps: Ps,
    pub self_ps: Ps,
    /// Σ over executions of the event's `flops`.
    pub flops: f64,
    /// Σ over executions of the event's `bytes_accessed`.
    pub bytes_accessed: f64,
}

impl DeviceOp {
    /// FLOPs per second of self time, in GFLOP/s.
    pub fn gflops_per_s(&self) -> Option<f64> {
        (self.self_ps > 0).then(|| self.flops * 1e3 / self.self_ps as f64)
    }

    /// Bytes per second of self time, in GB/s.
    pub fn gbytes_per_s(&self) -> Option<f64> {
        (self.self_ps > 0).then(|| self.bytes_accessed * 1e3 / self.self_ps as f64)
    }

    /// FLOPs per byte accessed.
    pub fn intensity(&self) -> Option<f64> {
        (self.bytes_accessed > 0.0).then(|| self.flops / self.bytes_accessed)
    }

    /// `compute` when the intensity is at or above the ridge point, else
    /// `memory`; `None` without peaks or bytes.
    pub fn bound(&self, peaks: &Peaks) -> Option<&'static str> {
        let ridge = peaks.ridge_point()?;
        let intensity = self.intensity()?;
        Some(if intensity >= ridge {
            "compute"
        } else {
            "memory"
        })
    }
}

/// Ops of one `hlo_category`.
#[derive(Clone, Debug, PartialEq)]
pub struct Category {
    pub name: String,
    pub count: u64,
    pub self_ps: Ps,
}

/// One XLA module (program), aggregated over its executions.
#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    pub name: String,
    /// xprof's program id, an unsigned 64-bit number.
    pub program_id: Option<u64>,
    pub count: u64,
    pub total_ps: Ps,
}

/// One device step.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The step's own name (its number on the `Steps` line).
    pub name: String,
    /// Start relative to the plane's window start.
    pub start_ps: Ps,
    pub duration_ps: Ps,
    /// Σ self time of the ops of the step.
    pub compute_ps: Ps,
    /// The name of the module (program) run in the step, if known.
    pub program: Option<String>,
}

impl Step {
    /// Step time not covered by op self time.
    pub fn idle_ps(&self) -> Ps {
        self.duration_ps - self.compute_ps
    }
}

/// Summary statistics of step durations, in picoseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct StepStats {
    pub count: usize,
    pub mean_ps: f64,
    /// Nearest-rank percentiles.
    pub p50_ps: Ps,
    pub p90_ps: Ps,
    pub min_ps: Ps,
    pub max_ps: Ps,
    /// Population standard deviation.
    pub stdev_ps: f64,
}

/// A component of the model and the device self time of the ops that the
/// rules of [`crate::COMPONENT_RULES`] put in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    pub name: &'static str,
    pub count: u64,
    pub self_ps: Ps,
}

/// One row of "why was the chip idle": a host thread and the innermost host
/// event running on it during idle gaps of the device.
#[derive(Clone, Debug, PartialEq)]
pub struct HostIdleRow {
    /// The thread's name (several threads can share one).
    pub thread: String,
    pub tid: u64,
    pub function: String,
    /// Overlap of the function's own (innermost) time with idle gaps.
    pub overlap_ps: Ps,
    /// Number of gaps it overlapped.
    pub gaps: u64,
}

/// Device idle gaps between programs and what the host did meanwhile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdleAttribution {
    /// Gaps between the end of one module execution and the start of the
    /// next, in host-synchronised time.
    pub gaps: u64,
    pub gap_ps: Ps,
    /// The gaps themselves, `[start, end)`, sorted.
    pub spans: Vec<(Ps, Ps)>,
    /// Heaviest overlap first.
    pub rows: Vec<HostIdleRow>,
    /// Host events that started before an earlier event of their thread:
    /// the rows are exact only when this is 0.
    pub out_of_order: u64,
}

/// Everything the device view knows about one device plane.
#[derive(Clone, Debug, PartialEq)]
pub struct DevicePlane {
    /// `/device:TPU:0`.
    pub plane: String,
    pub peaks: Peaks,
    /// Whether times came from the device clock stats.
    pub device_clock: bool,
    /// First start .. last end over the `Steps` and `XLA Ops` lines.
    pub window_ps: Ps,
    /// Σ op self time.
    pub busy_ps: Ps,
    /// Σ durations of top-level ops (ops without a parent; on the device
    /// clock two of them can overlap).
    pub op_union_ps: Ps,
    /// Σ durations of module executions.
    pub module_ps: Ps,
    /// xprof's duty cycle, on the host-synchronised clock: the union of the
    /// `XLA Ops` events (off-duty ops left out) ...
    pub duty_active_ps: Ps,
    /// ... within the span of the `XLA Ops` and `XLA Modules` events.
    pub duty_span_ps: Ps,
    /// Heaviest self time first.
    pub ops: Vec<DeviceOp>,
    /// Heaviest self time first.
    pub categories: Vec<Category>,
    /// In the order of [`crate::COMPONENT_RULES`], `other` last.
    pub components: Vec<Component>,
    /// Heaviest total time first.
    pub modules: Vec<Module>,
    /// In time order.
    pub steps: Vec<Step>,
    /// Whether `steps` came from a `Steps` line (else one step per module
    /// execution).
    pub steps_from_line: bool,
    /// Ops whose host-synchronised start is earlier than an earlier op's of
    /// their line (xprof sorts a line by it; sglprof reads it in order):
    /// self time is exact only when this is 0.
    pub out_of_order: u64,
    pub idle: IdleAttribution,
}

impl DevicePlane {
    /// window − busy, or 0 when busy exceeds the window (ops that overlap
    /// on the device clock); xprof's IDLE row.
    pub fn idle_ps(&self) -> Ps {
        (self.window_ps - self.busy_ps).max(0)
    }

    /// The time idle is a share of: the window, or busy when that is more.
    pub fn total_ps(&self) -> Ps {
        self.window_ps.max(self.busy_ps)
    }

    /// idle ÷ total (xprof's `device_idle_time_percent` ÷ 100); 0 for an
    /// empty window.
    pub fn idle_fraction(&self) -> f64 {
        if self.total_ps() > 0 {
            self.idle_ps() as f64 / self.total_ps() as f64
        } else {
            0.0
        }
    }

    /// Σ durations of top-level ops ÷ module time.
    pub fn module_duty_cycle(&self) -> Option<f64> {
        (self.module_ps > 0).then(|| self.op_union_ps as f64 / self.module_ps as f64)
    }

    /// xprof's duty cycle (`device_duty_cycle_percent` ÷ 100): active ÷
    /// span; `None` without `XLA Ops` or `XLA Modules` events.
    pub fn duty_cycle(&self) -> Option<f64> {
        (self.duty_span_ps > 0).then(|| self.duty_active_ps as f64 / self.duty_span_ps as f64)
    }
}
