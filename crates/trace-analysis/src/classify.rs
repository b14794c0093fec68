//! Rules that sort operation names into kinds and give them a short note.
//!
//! The rules look only at names (and at whether an event carried
//! `hlo_op`/`hlo_module` or sat on a `/device:` plane, which the analyzer
//! decides), so the same operation gets the same note in every report.

/// What an operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// An XLA operation: its events carry `hlo_op` or `hlo_module`, or run on
    /// a `/device:` plane (`device` is true then).
    Xla {
        device: bool,
    },
    /// A whole XLA program execution: an event on the `XLA Modules` line of
    /// a `/device:` plane (such as `jit_jitted_run_model`).
    XlaModule,
    /// A PjRt/TPU runtime event (`TpuLoadedExecutable::Execute`,
    /// `DeferredTpuAllocator::Allocate`, ...): see [`runtime_event`].
    Runtime,
    /// A Python function from JAX's Python tracer (`$file.py:line name`).
    Python,
    Other,
}

/// Words that, inside the class part of a `Class::method` name, mark an
/// XLA/PjRt runtime event.
const RUNTIME_CLASS_WORDS: &[&str] = &[
    "Tpu",
    "PjRt",
    "Pjrt",
    "Thunk",
    "Compiler",
    "Allocator",
    "Executable",
    "Client",
];

/// True for `Class::method` names whose class belongs to the XLA/PjRt/TPU
/// runtime, such as `TpuLoadedExecutable::Execute`,
/// `PjRtCpuExecutable::Execute`, `DeferredTpuAllocator::Allocate`,
/// `TpuClient::LinearizeIntoImpl` or `ThunkExecutor::Execute`.
pub fn runtime_event(name: &str) -> bool {
    let Some((class, _)) = name.split_once("::") else {
        return false;
    };
    !class.starts_with('$') && RUNTIME_CLASS_WORDS.iter().any(|word| class.contains(word))
}

/// A short description of what an XLA operation or runtime event does,
/// derived from its name only. `None` for other kinds.
pub fn note_for(name: &str, kind: OpKind) -> Option<&'static str> {
    match kind {
        OpKind::Xla { .. } => Some(xla_note(name)),
        OpKind::XlaModule => Some("XLA module (one program execution)"),
        OpKind::Runtime => Some(runtime_note(name)),
        OpKind::Python | OpKind::Other => None,
    }
}

fn xla_note(name: &str) -> &'static str {
    let lower = name.to_ascii_lowercase();
    let has = |word: &str| lower.contains(word);
    let starts = |word: &str| lower.starts_with(word);
    if has("all-reduce")
        || has("all-gather")
        || has("reduce-scatter")
        || has("all-to-all")
        || has("collective-permute")
    {
        "collective communication"
    } else if has("custom-call") || has("custom_call") || has("pallas") {
        "custom kernel"
    } else if has("fusion") {
        "XLA fusion kernel"
    } else if starts("dot") || starts("convolution") {
        "matrix multiply"
    } else if starts("copy") || starts("transpose") {
        "data movement"
    } else if has("gather") || has("scatter") || has("slice") {
        "indexing (gather, scatter, slice)"
    } else if starts("reduce") {
        "reduction"
    } else if starts("while") || starts("conditional") || starts("call") {
        "control flow"
    } else {
        "XLA operation"
    }
}

fn runtime_note(name: &str) -> &'static str {
    let has = |word: &str| name.contains(word);
    if has("Dealloc") || has("Free") {
        "memory release"
    } else if has("Alloc") {
        "memory allocation"
    } else if has("Compile") {
        "compilation"
    } else if has("Linearize") {
        "data linearization"
    } else if has("Transfer") || has("ToLiteral") || has("FromPyval") || has("CopyTo") {
        "host-device transfer"
    } else if has("Execute") && name.to_ascii_lowercase().contains("wait") {
        "waiting for execution to finish"
    } else if has("Execute") {
        "execution dispatch"
    } else {
        "runtime"
    }
}

/// True for the runtime's compiler entry points (`PjRtCpuClient::Compile`,
/// `TpuCompiler::Compile`, ...): an operation name that says `Compile` and
/// is not a Python tracer event (those start with `$`). The runtime nests
/// several such operations inside one compilation, so callers count the
/// heaviest of them rather than adding them up.
pub fn is_compilation(name: &str) -> bool {
    !name.starts_with('$') && name.contains("Compile")
}

/// True for operations that block a thread: Python tracer events of any
/// function named `wait`, `acquire`, `sleep` or `join`, of `queue.py` `get`,
/// and of `select`/`poll` in the `select` and `selectors` modules (the
/// function is the last space-separated word of the name, the location what
/// comes before it; `lax.py select` is an array operation, not a wait).
pub fn is_wait(name: &str) -> bool {
    let Some(python) = name.strip_prefix('$') else {
        return false;
    };
    let (location, function) = python.rsplit_once(' ').unwrap_or(("", python));
    match function {
        "wait" | "acquire" | "sleep" | "join" => true,
        "get" => location.starts_with("queue.py"),
        "select" | "poll" => location == "select" || location.starts_with("selectors.py"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_events() {
        for name in [
            "TpuLoadedExecutable::Execute",
            "PjRtCpuExecutable::Execute",
            "DeferredTpuAllocator::Allocate",
            "TpuClient::LinearizeIntoImpl",
            "ThunkExecutor::Execute (wait for completion)",
            "PjRtCpuClient::Compile",
        ] {
            assert!(runtime_event(name), "{name}");
        }
        for name in [
            "TaskDispatcher::dispatch",
            "ThreadpoolListener::Record",
            "copy",
            "$a.py:1 f",
        ] {
            assert!(!runtime_event(name), "{name}");
        }
    }

    #[test]
    fn notes() {
        let xla = OpKind::Xla { device: true };
        let check = |name, kind, expect| assert_eq!(note_for(name, kind), Some(expect), "{name}");
        check("broadcast_select_fusion", xla, "XLA fusion kernel");
        check("dot.691", xla, "matrix multiply");
        check("all-reduce.3", xla, "collective communication");
        check("transpose_copy_fusion.3", xla, "XLA fusion kernel");
        check("dynamic-slice.3", xla, "indexing (gather, scatter, slice)");
        check("reduce-window.42.clone", xla, "reduction");
        check("call.36", xla, "control flow");
        check(
            "TpuLoadedExecutable::Execute",
            OpKind::Runtime,
            "execution dispatch",
        );
        check(
            "DeferredTpuAllocator::Allocate",
            OpKind::Runtime,
            "memory allocation",
        );
        check(
            "TpuClient::LinearizeIntoImpl",
            OpKind::Runtime,
            "data linearization",
        );
        check(
            "ThunkExecutor::Execute (wait for completion)",
            OpKind::Runtime,
            "waiting for execution to finish",
        );
        assert_eq!(note_for("$a.py:1 f", OpKind::Python), None);
    }

    #[test]
    fn waits() {
        for name in [
            "$queue.py:154 get",
            "$threading.py:323 wait",
            "$<unknown> acquire",
            "$time sleep",
        ] {
            assert!(is_wait(name), "{name}");
        }
        for name in [
            "$dict get",
            "acquire",
            "$scheduler.py:1 run_batch",
            "$waiter.py:3 waiting",
        ] {
            assert!(!is_wait(name), "{name}");
        }
    }
}
