//! Messages to the user on stderr, one prefix for all.

use std::io::Write as _;

/// Diagnostics for the user (bad input lines, interrupts) go to stderr, never to the report.
pub fn warn(msg: impl std::fmt::Display) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "blockprobe: {}",
        printable(&msg.to_string())
    );
}

/// Text from the input or the network, made safe for a terminal: control characters (an
/// escape sequence in a target line could retitle or clear the user's terminal) become `?`;
/// newlines and tabs stay.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        s.chars()
            .map(|c| {
                if c.is_control() && c != '\n' && c != '\t' {
                    '?'
                } else {
                    c
                }
            })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_sequences_do_not_reach_the_terminal() {
        assert_eq!(
            super::printable("a\u{1b}]0;PWNED\u{7}b\tc\n"),
            "a?]0;PWNED?b\tc\n"
        );
        assert!(matches!(
            super::printable("plain"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
