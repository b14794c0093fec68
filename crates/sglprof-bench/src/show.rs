//! How the benchmarks show their groups: each command's median and range
//! with the load average after the group, and ratios against the baselines
//! with their targets. The measuring itself (groups A B A B after a
//! warm-up, wall time and peak RSS from `wait4`) is `bench-process`'s.

use bench_process::{Bench, Stats, load};

/// Prints a group's figures under `title`.
pub(crate) fn print_group(title: &str, group: &[Bench], stats: &[Stats]) {
    println!("\n{title}  [load average after: {}]", load());
    println!(
        "{:<40} {:>22} {:>26}",
        "command", "wall s: median (min-max)", "peak RSS MiB: median (min-max)"
    );
    for (bench, st) in group.iter().zip(stats) {
        println!(
            "{:<40} {:>8.3} ({:.3}-{:.3}) {:>10.1} ({:.1}-{:.1})",
            bench.name, st.wall.0, st.wall.1, st.wall.2, st.rss.0, st.rss.1, st.rss.2
        );
    }
}

/// Prints `ours` against `base`: the ratio of the medians, the spread
/// (fastest of ours against slowest of the baseline, and the reverse), and
/// the median against the baseline's fastest run, which a baseline whose
/// runs fall in a fast and a slow mode (xprof-rs on this machine) cannot
/// flatter.
pub(crate) fn ratio(what: &str, ours: &Stats, base: &Stats, time_target: &str, mem_target: &str) {
    println!(
        "{what:<40} {:>6.2}x time (spread {:.2}-{:.2}; against its fastest run {:.2}x; target {time_target}), {:.2}x memory (target {mem_target})",
        ours.wall.0 / base.wall.0,
        ours.wall.1 / base.wall.2,
        ours.wall.2 / base.wall.1,
        ours.wall.0 / base.wall.1,
        ours.rss.0 / base.rss.0
    );
}
