//! The width of the terminal on stderr, so the live progress line never wraps: a wrapped
//! line cannot be rewritten in place with `\r`.
//!
//! One `ioctl`, hence its own small module; the only other `unsafe` is in
//! [`crate::interrupt`].

/// Columns of the terminal on stderr, if stderr is a terminal that reports a width.
pub fn stderr_width() -> Option<usize> {
    // SAFETY: `winsize` is four plain integers; all zeroes is a valid value.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointed-to value, which lives on
    // this stack frame for the duration of the call; fd 2 is only queried.
    let rc = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// `text` cut to at most `width - 1` characters (the last column is left free so the
/// cursor never wraps), with `…` marking a cut.
pub fn fit(text: &str, width: usize) -> String {
    let max = width.saturating_sub(1).max(1);
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_to_the_width() {
        assert_eq!(fit("short", 80), "short");
        assert_eq!(fit("abcdefghij", 6), "abcd…");
        assert_eq!(fit("abcdefghij", 6).chars().count(), 5);
    }
}
