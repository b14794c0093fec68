//! Secrets kept out of everything sglprof renders: command lines, copied
//! server arguments and logs. URLs follow `tpu_cloud::redact`, the one
//! rule for every host.

use std::path::Path;

use crate::run_folder::{RunFolderError, files_if_any, write_atomic};

/// What stands in for a secret.
pub const REDACTED: &str = tpu_cloud::redact::MASK;

/// `url` without its user information (whatever its characters) and with
/// every query and fragment value masked: `https://user:TOKEN@host/x`
/// becomes `https://<redacted>@host/x`, `?access_token=T` becomes
/// `?access_token=<redacted>`. Other text is returned unchanged. This is
/// `tpu_cloud::redact::url`, the one rule.
pub fn url(url: &str) -> String {
    tpu_cloud::redact::url(url)
}

/// `/get_server_info` echoes every launch argument, API keys included; the
/// copy kept in the run folder must not.
pub fn server_args(mut info: serde_json::Value) -> serde_json::Value {
    if let Some(fields) = info.as_object_mut() {
        for (name, value) in fields.iter_mut() {
            if name.contains("api_key") && !value.is_null() {
                *value = serde_json::Value::String(REDACTED.to_owned());
            }
        }
    }
    info
}

/// Rewrites every text file below `dir` that contains `secret` without it
/// (the server logs its arguments at start-up; py-spy records command
/// lines). Binary files are left alone.
pub fn in_files(dir: &Path, secret: &str) -> Result<(), RunFolderError> {
    if secret.is_empty() {
        return Ok(());
    }
    for file in files_if_any(dir)? {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if text.contains(secret) {
            write_atomic(&file, text.replace(secret, REDACTED).as_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_urls() {
        assert_eq!(
            url("https://user:TOKEN@github.com/sgl-project/sglang-jax"),
            "https://<redacted>@github.com/sgl-project/sglang-jax"
        );
        assert_eq!(url("https://TOKEN@h/x@y"), "https://<redacted>@h/x@y");
        assert_eq!(url("https://github.com/a/b"), "https://github.com/a/b");
        assert_eq!(url("not a url"), "not a url");
        assert_eq!(
            url("https://h/o/r.git?access_token=T#t"),
            "https://h/o/r.git?access_token=<redacted>#<redacted>"
        );
    }

    #[test]
    fn api_keys_do_not_reach_the_run_folder() {
        let info = serde_json::json!({"api_key": "k3y", "port": 1, "admin_api_key": null});
        assert_eq!(
            server_args(info),
            serde_json::json!({"api_key": "<redacted>", "port": 1, "admin_api_key": null})
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        std::fs::write(&log, "server_args=ServerArgs(api_key='k3y', port=1)\n").unwrap();
        in_files(dir.path(), "k3y").unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "server_args=ServerArgs(api_key='<redacted>', port=1)\n"
        );
    }
}
