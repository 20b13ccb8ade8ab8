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

/// Returns the `--color` of a command line not parsed yet (the last one given; `auto` when
/// absent or not understood, which the parser then reports).
pub(crate) fn from_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> ColorChoice {
    let mut choice = ColorChoice::Auto;
    let mut args = args.into_iter().skip(1);
    while let Some(arg) = args.next() {
        let value = match arg.to_str() {
            Some("--") => break,
            Some("--color") => args.next(),
            Some(a) => match a.strip_prefix("--color=") {
                Some(v) => Some(v.into()),
                None => continue,
            },
            None => continue,
        };
        choice = match value.as_ref().and_then(|v| v.to_str()) {
            Some("always") => ColorChoice::Always,
            Some("never") => ColorChoice::Never,
            _ => ColorChoice::Auto,
        };
    }
    choice
}

/// Returns clap's color setting for `choice`.
pub(crate) fn for_clap(choice: ColorChoice) -> clap::ColorChoice {
    match choice {
        ColorChoice::Auto => clap::ColorChoice::Auto,
        ColorChoice::Always => clap::ColorChoice::Always,
        ColorChoice::Never => clap::ColorChoice::Never,
    }
}

/// Returns `label:` in `style`, for the start of a message line.
pub(crate) fn label(style: Style, label: &str) -> String {
    format!("{style}{label}:{style:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn color_is_read_before_parsing() {
        let args = |line: &str| line.split(' ').map(Into::into).collect::<Vec<_>>();
        assert_eq!(from_args(args("launcher list")), ColorChoice::Auto);
        assert_eq!(
            from_args(args("launcher --color always list")),
            ColorChoice::Always
        );
        assert_eq!(
            from_args(args("launcher list --color=never")),
            ColorChoice::Never
        );
        assert_eq!(
            from_args(args("launcher run x -- --color always")),
            ColorChoice::Auto
        );
    }

    #[test]
    fn label_wraps_text_and_colon_in_escapes() {
        assert_eq!(label(ERROR, "error"), "\u{1b}[1m\u{1b}[31merror:\u{1b}[0m");
    }
}
