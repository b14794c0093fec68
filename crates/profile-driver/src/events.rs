//! What a run tells its user while it goes: events, which the command line
//! turns into lines and progress bars. The driver and its hosts never
//! print; a library user can show the events any way, or not at all.

/// One thing that happened.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A step of the run, said in one line; `tag` names who says it
    /// (`profile`, `env`, `tpu`, `rehearsal`, `k8s`, `artifacts`).
    Line { tag: &'static str, text: &'a str },
    /// Requests of a workload phase answered so far (`done` of `total`,
    /// `failed` of them with an error).
    Requests {
        phase: &'a str,
        done: usize,
        failed: usize,
        total: usize,
    },
}

/// Receives the events of a run.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event<'_>);

    /// A [`Event::Line`].
    fn line(&self, tag: &'static str, text: &str) {
        self.event(Event::Line { tag, text });
    }
}

/// Drops every event.
pub struct Silent;

impl Progress for Silent {
    fn event(&self, _: Event<'_>) {}
}

/// Keeps the lines, for tests.
#[derive(Default)]
pub struct Recorded(pub std::sync::Mutex<Vec<String>>);

impl Progress for Recorded {
    fn event(&self, event: Event<'_>) {
        if let Event::Line { tag, text } = event {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("[{tag}] {text}"));
        }
    }
}
