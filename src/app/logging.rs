//! Log lines on standard error, for every command and the daemon alike: text or JSON, with
//! control characters escaped, and colour only where a person reads a terminal.
//!
//! Colour follows the conventions a Linux host expects: none when `NO_COLOR` is set to
//! anything but the empty string (no-color.org), none when standard error is not a terminal
//! (a pipe, a file, journald), none under systemd (`JOURNAL_STREAM`: journald adds its own
//! time and colour); `CLICOLOR_FORCE` (non-empty, not `0`) forces it where the terminal
//! cannot be seen (a pager), and still yields to `NO_COLOR`.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};

/// The format of each log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// What decides whether log lines are coloured, as read from the process.
#[derive(Debug, Clone, Default)]
pub struct Surroundings {
    /// `NO_COLOR`.
    pub no_color: Option<OsString>,
    /// `CLICOLOR_FORCE`.
    pub force: Option<OsString>,
    /// `JOURNAL_STREAM` is set: standard error is journald.
    pub journald: bool,
    /// Standard error is a terminal.
    pub terminal: bool,
}

impl Surroundings {
    /// The surroundings of this process.
    pub fn of_process() -> Surroundings {
        Surroundings {
            no_color: std::env::var_os("NO_COLOR"),
            force: std::env::var_os("CLICOLOR_FORCE"),
            journald: std::env::var_os("JOURNAL_STREAM").is_some(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Whether log lines carry colour codes.
    pub fn colour(&self) -> bool {
        let set = |v: &Option<OsString>| v.as_ref().is_some_and(|v| !v.is_empty());
        if set(&self.no_color) {
            return false;
        }
        if set(&self.force) && self.force.as_deref() != Some("0".as_ref()) {
            return true;
        }
        self.terminal && !self.journald
    }
}

/// Installs the global subscriber: `JOBWARDEN_LOG` (an `EnvFilter` string) or
/// `default_level`; under systemd no timestamp of its own (journald adds one).
pub fn init(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JOBWARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let surroundings = Surroundings::of_process();
    let ansi = surroundings.colour();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Escaped { ansi })
        .with_ansi(ansi);
    match (format, surroundings.journald) {
        (LogFormat::Json, _) => builder.json().init(),
        (LogFormat::Text, true) => builder.without_time().init(),
        (LogFormat::Text, false) => builder.init(),
    }
}

/// Standard error, with the control characters of each log line escaped (a newline in a job
/// id, a path or a database message would otherwise start a forged line). The line's own final
/// newline is kept, and so are colour codes when they are wanted.
#[derive(Clone, Copy)]
struct Escaped {
    ansi: bool,
}

struct EscapedWriter {
    ansi: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Escaped {
    type Writer = EscapedWriter;

    fn make_writer(&'a self) -> EscapedWriter {
        EscapedWriter { ansi: self.ansi }
    }
}

impl Write for EscapedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = escape(&String::from_utf8_lossy(buf), self.ansi);
        std::io::stderr().write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `text` with control characters escaped, its final newline kept, and the escape character
/// kept only when `ansi` (colour codes).
fn escape(text: &str, ansi: bool) -> String {
    let (body, end) = match text.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (text, ""),
    };
    let mut line = String::with_capacity(text.len());
    for c in body.chars() {
        match c {
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push('\t'),
            '\u{1b}' if ansi => line.push(c),
            c if c.is_control() => line.push_str(&c.escape_unicode().to_string()),
            c => line.push(c),
        }
    }
    line.push_str(end);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_and_never_under_no_color() {
        let s = |no_color: Option<&str>, force: Option<&str>, journald: bool, terminal: bool| {
            Surroundings {
                no_color: no_color.map(OsString::from),
                force: force.map(OsString::from),
                journald,
                terminal,
            }
            .colour()
        };
        assert!(s(None, None, false, true));
        assert!(!s(Some("1"), None, false, true), "NO_COLOR");
        assert!(s(Some(""), None, false, true), "an empty NO_COLOR is unset");
        assert!(!s(None, None, false, false), "a pipe or a file");
        assert!(!s(None, None, true, true), "journald");
        assert!(s(None, Some("1"), false, false), "CLICOLOR_FORCE");
        assert!(!s(None, Some("0"), false, false));
        assert!(!s(Some("1"), Some("1"), false, true), "NO_COLOR wins");
    }

    #[test]
    fn control_characters_are_escaped_and_colour_kept_only_when_wanted() {
        assert_eq!(escape("a\nb\u{7}\n", false), "a\\nb\\u{7}\n");
        assert_eq!(escape("\u{1b}[1mx\n", true), "\u{1b}[1mx\n");
        assert_eq!(escape("\u{1b}[1mx\n", false), "\\u{1b}[1mx\n");
    }
}
