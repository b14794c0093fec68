//! A whole profiling session from Rust, through the crates alone: a real
//! sglang-jax server on this machine's CPU (installed into the sglprof
//! cache on first use), 8 profiled `/generate` requests, the run folder
//! and its report, then the report's numbers read back.
//!
//! `cargo run -p profile-driver --example local_session -- RUN_DIR [URL]`;
//! with a URL, the session runs against that already running server.

use std::sync::Arc;

use profile_driver::events::{Event, Progress};
use profile_driver::host::{Host, never};
use profile_driver::local::{AttachHost, LocalHost};
use profile_session::plan::{AttachOptions, Device, HostPlan, LocalOptions, Plan};

struct Print;

impl Progress for Print {
    fn event(&self, event: Event<'_>) {
        if let Event::Line { tag, text } = event {
            eprintln!("[{tag}] {text}");
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let run_dir = args.next().ok_or("usage: local_session RUN_DIR [URL]")?;
    let (host, mut server): (_, Box<dyn Host>) = match args.next() {
        Some(url) => (
            HostPlan::Attach(AttachOptions { url: url.clone() }),
            Box::new(AttachHost { url }),
        ),
        None => (
            HostPlan::Local(LocalOptions {
                device: Device::Cpu,
            }),
            Box::new(LocalHost {
                device: Device::Cpu,
            }),
        ),
    };
    let mut plan = Plan::new(host);
    plan.requests = 8;
    plan.out = Some(run_dir.into());
    let run = profile_driver::drive(&plan, &mut *server, Arc::new(Print), never()).await?;
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.run_dir.join("summary.json"))?)?;
    println!("{}", summary["top_operations"][0]["name"]);
    Ok(())
}
