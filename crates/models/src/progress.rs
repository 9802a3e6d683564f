//! Progress bars on stderr for long byte-copying steps (extracting and hashing ~100 MB files).
//!
//! indicatif hides its bars by itself when stderr is not a terminal, so logs and tests stay
//! clean without a flag; `quiet` hides them even on a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Files below this size are handled too fast for a bar to be worth drawing.
const MIN_BAR_BYTES: u64 = 8 << 20;

const TEMPLATE: &str = "{msg:<40} [{bar:30.cyan/blue}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta}";

/// A byte-count bar labelled `msg`, or a hidden one when `quiet` or `len` is small.
pub(crate) fn bytes_bar(len: u64, msg: String, quiet: bool) -> ProgressBar {
    if quiet || len < MIN_BAR_BYTES {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    // The template is a constant, so a parse failure is a bug caught by the unit test below;
    // falling back to the default style keeps a release build from panicking over looks.
    if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(msg);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses() {
        assert!(ProgressStyle::with_template(TEMPLATE).is_ok());
    }
}
