//! Messages to the user on stderr, one prefix for all.

use std::io::Write as _;

/// Diagnostics for the user (bad input lines, interrupts) go to stderr, never to the report.
pub fn warn(msg: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "blockprobe: {msg}");
}
