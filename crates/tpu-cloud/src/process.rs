//! Child processes in their own process group, killed as a whole.
//!
//! Each command of this crate (`gcloud`, or `bash` for a local worker)
//! starts as the leader of a new process group. A [`GroupGuard`] kills the
//! group with SIGKILL when dropped, so cancelling the future that waits on
//! a command (Ctrl-C, a lost race in `select!`) also ends everything the
//! command started, not only the direct child. A command that finished by
//! itself is left alone: what it detached (a server) is its business.

use std::process::Stdio;

use crate::Error;

/// Kills a process group when dropped.
#[derive(Debug)]
pub(crate) struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl GroupGuard {
    /// Leaves the group alone on drop: the command finished by itself,
    /// and what it detached on purpose (a server under `setsid`, which may
    /// not have left the group yet) is not ours to kill.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    fn kill(&self) {
        // SAFETY: killpg only sends a signal; a group that no longer exists
        // gives ESRCH, which is fine.
        unsafe {
            libc::killpg(self.pgid, libc::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            self.kill();
        }
    }
}

/// Prepares `cmd` to lead its own process group with stdin closed.
pub(crate) fn in_own_group(cmd: &mut tokio::process::Command) {
    cmd.process_group(0).kill_on_drop(true).stdin(Stdio::null());
}

/// Starts `cmd` (prepared by [`in_own_group`]) and returns it with the
/// guard of its group. `describe` names it in errors.
pub(crate) fn spawn(
    cmd: &mut tokio::process::Command,
    describe: impl Fn(String) -> Error,
) -> Result<(tokio::process::Child, GroupGuard), Error> {
    let child = cmd.spawn().map_err(|err| describe(err.to_string()))?;
    let pid = child
        .id()
        .ok_or_else(|| describe("exited before it could be watched".to_owned()))?;
    let pgid = i32::try_from(pid).map_err(|_| describe(format!("pid {pid} out of range")))?;
    Ok((child, GroupGuard { pgid, armed: true }))
}

/// Runs `cmd` to completion and returns (status, stdout, stderr). The
/// whole group is killed if the future is dropped before the command
/// ends.
pub(crate) async fn output(
    cmd: &mut tokio::process::Command,
    describe: impl Fn(String) -> Error,
) -> Result<(std::process::ExitStatus, String, String), Error> {
    in_own_group(cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (child, mut guard) = spawn(cmd, &describe)?;
    let out = child
        .wait_with_output()
        .await
        .map_err(|err| describe(err.to_string()))?;
    guard.disarm();
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The last `n` lines of `text`, joined with ` | `.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().rev().take(n).collect();
    let lines: Vec<&str> = lines.into_iter().rev().collect();
    lines.join(" | ")
}
