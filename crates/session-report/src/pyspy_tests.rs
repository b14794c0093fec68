//! The py-spy section: the per-process overview (share of samples, share
//! waiting), the flamegraph link and the per-process tables.

use crate::render::pyspy_section;
use crate::{PySpyProcess, PySpySection};

fn process(label: &str, role: &str, samples: u64, wait: u64) -> PySpyProcess {
    PySpyProcess {
        label: label.to_owned(),
        role: role.to_owned(),
        samples,
        wait_samples: wait,
        top_own: vec![("Socket.recv_pyobj (zmq/sugar/socket.py)".to_owned(), wait)],
        top_total: vec![("<module> (launch_server.py)".to_owned(), samples)],
    }
}

#[test]
fn overview_shares_and_link() {
    let section = PySpySection {
        source: "artifacts/py-spy/profile.raw.txt".to_owned(),
        flamegraph: Some("pyspy-flamegraph.svg".to_owned()),
        processes: vec![
            process("pid 2 sglang::scheduler", "scheduler", 300, 30),
            process(
                "pid 1 python -m sgl_jax.launch_server",
                "HTTP server and tokenizer",
                100,
                75,
            ),
            process("pid 3 sglang::detokenizer", "detokenizer", 0, 0),
        ],
    };
    let mut out = String::new();
    pyspy_section(&section, &mut out);
    // 300 of 400 samples = 75.0 %, 30 of 300 waiting = 10.0 %; 75 of 100.
    assert!(
        out.contains("| pid 2 sglang::scheduler | scheduler | 300 | 75.0 | 10.0 |"),
        "{out}"
    );
    assert!(out.contains("| 100 | 25.0 | 75.0 |"), "{out}");
    assert!(out.contains("| 0 | 0.0 | 0.0 |"), "{out}");
    assert!(out.contains("[pyspy-flamegraph.svg](pyspy-flamegraph.svg)"));
    insta::assert_snapshot!(out);
}
