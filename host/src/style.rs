//! Colors for the messages launcher writes on stderr, in cargo's palette.
//!
//! Whether to color is decided once, in `main`, from `--color`: `always` and `never` win;
//! with `auto` (the default) anstream colors only a terminal, and follows `NO_COLOR`,
//! `CLICOLOR_FORCE` and `CLICOLOR` (<https://bixense.com/clicolors/>). Everything that prints a
//! styled message goes through `anstream`, which strips the escape codes when colors are off,
//! so the text is the same either way.

use anstyle::{AnsiColor, Style};

/// `error:`, bold red.
pub(crate) const ERROR: Style = AnsiColor::Red.on_default().bold();
/// `warning:`, bold yellow.
pub(crate) const WARNING: Style = AnsiColor::Yellow.on_default().bold();
/// `hint:`, bold cyan.
pub(crate) const HINT: Style = AnsiColor::Cyan.on_default().bold();
/// Secondary text: `caused by:`, launcher's `-v` notes.
pub(crate) const DIM: Style = Style::new().dimmed();

/// When to color output: the value of `--color`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ColorChoice {
    /// Color on a terminal, unless `NO_COLOR` is set (or `CLICOLOR_FORCE` asks for it anyway).
    #[default]
    Auto,
    /// Always color, even into a pipe or a file.
    Always,
    /// Never color.
    Never,
}

/// Makes `choice` the choice of every anstream stream of this process.
pub(crate) fn init(choice: ColorChoice) {
    let choice = match choice {
        ColorChoice::Auto => anstream::ColorChoice::Auto,
        ColorChoice::Always => anstream::ColorChoice::Always,
        ColorChoice::Never => anstream::ColorChoice::Never,
    };
    choice.write_global();
}

/// Returns `label:` in `style`, for the start of a message line.
pub(crate) fn label(style: Style, label: &str) -> String {
    format!("{style}{label}:{style:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_wraps_text_and_colon_in_escapes() {
        assert_eq!(label(ERROR, "error"), "\u{1b}[1m\u{1b}[31merror:\u{1b}[0m");
    }
}
