//! How py-spy spells one frame: `process <pid>:"<name>"`, `thread (<id>)`,
//! `thread (<id>): <name>`, `name (file:line)`, `name (file)` or a bare name.
//!
//! Both readers share these rules. The raw reader also needs
//! [`process_prefix`] to find where a process frame ends, because the quoted
//! command line may contain `;`.

use std::sync::Arc;

use crate::{Frame, Process, Thread};

/// If `text` starts with `process <pid>:"`, returns the pid and the text after
/// the opening quote.
pub(crate) fn process_prefix(text: &str) -> Option<(u32, &str)> {
    let rest = text.strip_prefix("process ")?;
    let n_digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if n_digits == 0 {
        return None;
    }
    let pid = rest[..n_digits].parse::<u32>().ok()?;
    let after_quote = rest[n_digits..].strip_prefix(":\"")?;
    Some((pid, after_quote))
}

/// Reads a whole process frame, as speedscope stores it.
pub(crate) fn parse_process(text: &str) -> Option<Process> {
    let (pid, after_quote) = process_prefix(text)?;
    let name = after_quote.strip_suffix('"')?;
    Some(Process {
        pid,
        name: Some(name.into()),
    })
}

/// Reads `thread (<id>)` or `thread (<id>): <name>`, where the id is decimal
/// or `0x` hex. Anything else, such as a Python function called `thread`
/// (`thread (file.py:3)`), is not a thread frame.
pub(crate) fn parse_thread(text: &str) -> Option<Thread> {
    let rest = text.strip_prefix("thread (")?;
    let close = rest.find(')')?;
    let id = &rest[..close];
    let is_id = match id.strip_prefix("0x").or_else(|| id.strip_prefix("0X")) {
        Some(hex) => !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
    };
    if !is_id {
        return None;
    }
    let after = &rest[close + 1..];
    let name = if after.is_empty() {
        None
    } else {
        let name = after
            .strip_prefix(": ")
            .or_else(|| after.strip_prefix(':'))?;
        (!name.is_empty()).then(|| name.to_owned())
    };
    Some(Thread {
        id: id.into(),
        name: name.map(Arc::from),
    })
}

/// Reads `name (file:line)`, `name (file)` or a bare `name`.
///
/// The location is the parenthesised group that closes at the end of the
/// text and is preceded by a space; parentheses are balanced so that a file
/// such as `x (1)/a.py` stays whole. A line of 0 means unknown.
pub(crate) fn parse_python(text: &str) -> Frame {
    let bare = || Frame {
        name: text.into(),
        file: None,
        line: None,
    };
    let Some(open) = location_start(text) else {
        return bare();
    };
    let name = &text[..open - 1];
    let location = &text[open + 1..text.len() - 1];
    if location.is_empty() {
        return Frame {
            name: name.into(),
            file: None,
            line: None,
        };
    }
    let (file, line) = match location.rsplit_once(':') {
        Some((file, line))
            if !file.is_empty() && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) =>
        {
            match line.parse::<u32>() {
                Ok(line) => (file, (line != 0).then_some(line)),
                Err(_) => (location, None),
            }
        }
        _ => (location, None),
    };
    Frame {
        name: name.into(),
        file: Some(file.into()),
        line,
    }
}

/// The byte index of the `(` that matches the final `)`, if it is preceded by
/// a space and leaves a non-empty name.
fn location_start(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    if bytes.last() != Some(&b')') {
        return None;
    }
    let mut depth = 0usize;
    for idx in (0..bytes.len()).rev() {
        match bytes[idx] {
            b')' => depth += 1,
            b'(' => {
                depth -= 1;
                if depth == 0 {
                    return (idx >= 2 && bytes[idx - 1] == b' ').then_some(idx);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> String {
        let it = parse_python(text);
        format!("{:?} {:?} {:?}", it.name, it.file, it.line)
    }

    #[test]
    fn python_frames() {
        assert_eq!(
            frame("Scheduler.run_batch (sgl_jax/srt/managers/scheduler.py:775)"),
            r#""Scheduler.run_batch" Some("sgl_jax/srt/managers/scheduler.py") Some(775)"#
        );
        assert_eq!(
            frame("<module> (<string>:1)"),
            r#""<module>" Some("<string>") Some(1)"#
        );
        assert_eq!(
            frame("_run_code (<frozen runpy>:88)"),
            r#""_run_code" Some("<frozen runpy>") Some(88)"#
        );
        assert_eq!(frame("f (a.py)"), r#""f" Some("a.py") None"#);
        assert_eq!(frame("f (a.py:0)"), r#""f" Some("a.py") None"#);
        assert_eq!(
            frame("f (dir (1)/a.py:7)"),
            r#""f" Some("dir (1)/a.py") Some(7)"#
        );
        assert_eq!(
            frame("g(int) (lib.so:3)"),
            r#""g(int)" Some("lib.so") Some(3)"#
        );
        assert_eq!(frame("f (C:\\a.py:2)"), r#""f" Some("C:\\a.py") Some(2)"#);
        assert_eq!(
            frame("f (a.py:99999999999)"),
            r#""f" Some("a.py:99999999999") None"#
        );
        assert_eq!(frame("f ()"), r#""f" None None"#);
        assert_eq!(frame("bare"), r#""bare" None None"#);
        assert_eq!(frame("(a.py:1)"), r#""(a.py:1)" None None"#);
        assert_eq!(frame("x) (a.py:1)"), r#""x)" Some("a.py") Some(1)"#);
        assert_eq!(
            frame("unbalanced a.py:1)"),
            r#""unbalanced a.py:1)" None None"#
        );
    }

    #[test]
    fn thread_frames() {
        let it = |text: &str| parse_thread(text).map(|t| format!("{} {:?}", t.id, t.name));
        assert_eq!(it("thread (18921)").as_deref(), Some("18921 None"));
        assert_eq!(it("thread (0x7F3A00)").as_deref(), Some("0x7F3A00 None"));
        assert_eq!(
            it("thread (18921): Thread-1 (watchdog_thread)").as_deref(),
            Some(r#"18921 Some("Thread-1 (watchdog_thread)")"#)
        );
        assert_eq!(it("thread (a.py:3)"), None);
        assert_eq!(it("thread ()"), None);
        assert_eq!(it("thread (0x)"), None);
        assert_eq!(it("thread (12) x"), None);
    }

    #[test]
    fn process_frames() {
        let it = |text: &str| parse_process(text).map(|p| format!("{} {:?}", p.pid, p.name));
        assert_eq!(
            it(r#"process 18887:"sglang::scheduler""#).as_deref(),
            Some(r#"18887 Some("sglang::scheduler")"#)
        );
        assert_eq!(it(r#"process 1:"""#).as_deref(), Some(r#"1 Some("")"#));
        assert_eq!(it(r#"process 99999999999:"x""#), None);
        assert_eq!(it(r#"process x:"x""#), None);
        assert_eq!(it(r#"process 1:"x"#), None);
    }
}
