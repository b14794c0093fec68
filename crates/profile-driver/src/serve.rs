//! A server on this machine held for as long as its caller wants one
//! (`cargo xtask serve`): started as a local run starts it (the cached
//! environment installed first when missing), handed to the caller once it
//! is ready, and stopped when the caller's `closed` future fires or on a
//! signal (the `cancel` future). It ends with an error when the server dies
//! by itself. Sessions attach to it by its URL ([`crate::local::AttachHost`]).
//! A caller that holds the server for its parent process can watch its
//! standard input ([`stdin_can_close`], [`read_until_eof`]): the parent
//! keeps the write end, and the kernel closes it however the parent ends.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use profile_session::plan::{HostPlan, LocalOptions, Plan};

use crate::DriveError;
use crate::events::Progress;
use crate::host::Cancel;
use crate::local::LocalServer;

/// How often a held server is checked for being alive.
const LIVENESS_EVERY: Duration = Duration::from_millis(500);

/// Starts the server of the local `plan` in `dir` (its log in
/// `server.log`), calls `ready` with it, and holds it until `closed` (whose
/// cause `closed_why` names, e.g. "standard input closed") or `cancel`
/// fires, then stops it. Either firing while the server starts kills it
/// (`closed` then ends the call without an error).
pub async fn hold(
    plan: &Plan,
    dir: &Path,
    closed: impl Future<Output = ()>,
    closed_why: &str,
    mut cancel: Cancel,
    progress: &dyn Progress,
    ready: impl FnOnce(&LocalServer) -> Result<(), DriveError>,
) -> Result<(), DriveError> {
    let HostPlan::Local(LocalOptions { device }) = plan.host else {
        return Err(DriveError::Failed(format!(
            "a {} plan has no server to hold here",
            plan.host.kind().flag()
        )));
    };
    LocalServer::check(plan, device)?;
    let mut closed = std::pin::pin!(closed);
    let log = dir.join("server.log");
    let server = tokio::select! {
        server = LocalServer::start(plan, device, &log, dir, progress) => server?,
        signal = &mut cancel => {
            sglang_server::kill_all_supervised();
            return Err(DriveError::Failed(format!(
                "interrupted by {signal} while the server started; it was killed"
            )));
        }
        () = &mut closed => {
            sglang_server::kill_all_supervised();
            progress.line("serve", &format!("{closed_why} while the server started; it was killed"));
            return Ok(());
        }
    };
    ready(&server)?;
    let died = async {
        loop {
            tokio::time::sleep(LIVENESS_EVERY).await;
            if let Err(err) = server.liveness().check("while serving") {
                return err;
            }
        }
    };
    let why = tokio::select! {
        () = closed => closed_why.to_owned(),
        signal = cancel => signal.to_owned(),
        err = died => {
            server.stop(progress).await;
            return Err(DriveError::Died(Box::new(err)));
        }
    };
    progress.line("serve", &format!("{why}: stopping the server"));
    server.stop(progress).await;
    Ok(())
}

/// The folder a held server works in: `dir` (created when missing), or
/// else a temporary folder, removed when the returned guard is dropped.
pub fn server_dir(dir: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>), DriveError> {
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|source| DriveError::Io {
            what: "cannot create",
            path: dir.to_path_buf(),
            source,
        })?;
        return Ok((dir.to_path_buf(), None));
    }
    let temp = tempfile::Builder::new()
        .prefix("sglprof-serve-")
        .tempdir()
        .map_err(|source| DriveError::Io {
            what: "cannot create the server's folder in",
            path: std::env::temp_dir(),
            source,
        })?;
    Ok((temp.path().to_path_buf(), Some(temp)))
}

/// A `closed` future for [`hold`] that fires when standard input ends, if
/// `watch` (see [`stdin_can_close`]), and never otherwise. The reader
/// starts at once, on a blocking thread of the current tokio runtime (call
/// this inside it), and may still block when the hold ends: shut the
/// runtime down without waiting for it.
pub fn stdin_closed(watch: bool) -> impl Future<Output = ()> {
    let reader = tokio::task::spawn_blocking(move || {
        if watch {
            read_until_eof();
        } else {
            loop {
                std::thread::park();
            }
        }
    });
    async {
        let _ = reader.await;
    }
}

/// Whether standard input is something that closes: a pipe, a socket or a
/// terminal. `/dev/null` or a file (a script's background job, say) is at
/// its end from the start and is not watched.
pub fn stdin_can_close() -> bool {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        return true;
    }
    // SAFETY: fstat writes into a zeroed stat buffer of the right type.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(0, &mut stat) } != 0 {
        return false;
    }
    let kind = stat.st_mode & libc::S_IFMT;
    kind == libc::S_IFIFO || kind == libc::S_IFSOCK
}

/// Reads and drops standard input until it ends.
pub fn read_until_eof() {
    use std::io::Read as _;
    let mut buf = [0u8; 1024];
    let mut stdin = std::io::stdin().lock();
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_folder_is_created_and_kept_a_temporary_one_removed() {
        let parent = tempfile::tempdir().unwrap();
        let given = parent.path().join("a/b");
        let (dir, guard) = server_dir(Some(&given)).unwrap();
        assert_eq!(dir, given);
        assert!(dir.is_dir() && guard.is_none());
        let (dir, guard) = server_dir(None).unwrap();
        assert!(dir.is_dir());
        drop(guard);
        assert!(!dir.exists());
        let file = parent.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = server_dir(Some(&file.join("x"))).unwrap_err().to_string();
        assert_eq!(err, format!("cannot create {}", file.join("x").display()));
    }
}
