//! Uploading from the TPU VM. The raw traces are large and a laptop's uplink
//! is slow, so the upstream runbook uploads them from the VM. The VM runs a
//! shell script rendered here (`gcloud storage rsync` into the run folder,
//! then one `sglprof-file <size> <sha256> <path>` line per file); the machine
//! that drives the session parses those lines and passes them to
//! [`upload_run`](crate::upload_run) as [`RemoteFile`]s, which checks each
//! object's size and crc32c in the bucket and writes the manifest last.

use crate::error::{Error, Result};
use crate::layout::RunAddress;
use crate::manifest::is_safe_relative;

/// A file some other machine uploaded into the run folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// Relative to the run folder, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Lowercase hex, as `sha256sum` prints it.
    pub sha256: String,
}

const LINE_TAG: &str = "sglprof-file";

/// A bash script for the VM that uploads `vm_dir` into the run folder under
/// `subdir` (for example `artifacts/raw`) and prints its listing.
///
/// `gcloud storage rsync` is parallel, resumable and checks crc32c itself;
/// running the script again uploads only what is missing. The VM's service
/// account needs write access to the bucket.
pub fn vm_upload_script(vm_dir: &str, addr: &RunAddress, subdir: &str) -> Result<String> {
    let subdir = subdir.trim_matches('/');
    if !subdir.is_empty() && !is_safe_relative(subdir) {
        return Err(Error::invalid(
            "remote subfolder",
            subdir,
            "use a relative path without `..`",
        ));
    }
    let dest = if subdir.is_empty() {
        addr.url()
    } else {
        format!("{}{subdir}/", addr.url())
    };
    let prefix = if subdir.is_empty() {
        String::new()
    } else {
        format!("{subdir}/")
    };
    Ok(format!(
        "set -euo pipefail\n\
         cd {dir}\n\
         gcloud storage rsync --recursive . {dest}\n\
         find . -type f -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' f; do\n  \
         printf '{LINE_TAG} %s %s %s\\n' \"$(stat -c %s \"$f\")\" \"$(sha256sum \"$f\" | cut -d' ' -f1)\" {prefix}\"${{f#./}}\"\n\
         done\n",
        dir = shell_quote(vm_dir),
        dest = shell_quote(&dest),
        prefix = shell_quote(&prefix),
    ))
}

/// The `sglprof-file` lines of the script's output; other lines (gcloud's
/// progress) are ignored.
pub fn parse_vm_listing(output: &str) -> Result<Vec<RemoteFile>> {
    let mut res = Vec::new();
    for line in output.lines() {
        let Some(rest) = line
            .strip_prefix(LINE_TAG)
            .and_then(|r| r.strip_prefix(' '))
        else {
            continue;
        };
        let mut parts = rest.splitn(3, ' ');
        let (Some(size), Some(sha256), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::invalid(
                "VM listing line",
                line,
                "expected `sglprof-file <size> <sha256> <path>`",
            ));
        };
        let size = size
            .parse()
            .map_err(|_| Error::invalid("VM listing line", line, "bad size"))?;
        let ok_sha = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok_sha {
            return Err(Error::invalid("VM listing line", line, "bad sha256"));
        }
        if !is_safe_relative(path) {
            return Err(Error::invalid("VM listing line", line, "unsafe path"));
        }
        res.push(RemoteFile {
            path: path.to_owned(),
            size,
            sha256: sha256.to_ascii_lowercase(),
        });
    }
    Ok(res)
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::RunKind;

    #[test]
    fn script_and_listing() {
        let addr = RunAddress::new(
            "sglprof-runs",
            "sglang-profiles",
            RunKind::Manual,
            "2026-02-05",
            "score-r1",
        )
        .unwrap();
        insta::assert_snapshot!(
            vm_upload_script("/tmp/score_profile", &addr, "artifacts/raw").unwrap()
        );
        assert!(vm_upload_script("/tmp/x", &addr, "../up").is_err());

        let out = "Copying file://./a.pb to gs://...\n\
                   sglprof-file 3 98EA6E4F216F2FB4B69FFF9B3A44842C38686CA685F3F55DC48C5D3FB1107BE4 artifacts/raw/my file.pb\n";
        let files = parse_vm_listing(out).unwrap();
        assert_eq!(
            files,
            vec![RemoteFile {
                path: "artifacts/raw/my file.pb".to_owned(),
                size: 3,
                sha256: "98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4"
                    .to_owned(),
            }]
        );
        assert!(parse_vm_listing("sglprof-file 3 abc ../x\n").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
