//! The progress display of long transfers (`kctl image import`): a bar with bytes, rate and
//! ETA on stderr when stderr is a terminal, a spinner while the total is unknown, nothing
//! at all otherwise (so logs and pipes only get the final result).

use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A known total: `Importing debian [=====>    ] 1.2 GiB/2.0 GiB 85.3 MiB/s ETA 9s`.
const BAR: &str =
    "{msg} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}";
/// An unknown total: `⠙ Importing debian 1.2 GiB 85.3 MiB/s`.
const SPINNER: &str = "{spinner} {msg} {binary_bytes} {binary_bytes_per_sec}";
/// How often the spinner turns while no bytes arrive.
const TICK: Duration = Duration::from_millis(120);

/// Byte progress on stderr; cleared when finished or dropped (on errors too).
pub struct Progress {
    bar: ProgressBar,
    bar_style: ProgressStyle,
    /// The length the bar shows, once the total is known.
    length: Option<u64>,
}

impl Progress {
    /// A progress display labelled `message`, drawn only when `visible` (stderr is a TTY).
    pub fn new(message: String, visible: bool) -> Result<Self> {
        let bar_style = ProgressStyle::with_template(BAR)
            .context("progress bar template")?
            .progress_chars("=> ");
        let spinner_style =
            ProgressStyle::with_template(SPINNER).context("progress spinner template")?;
        let bar = if visible {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                .with_style(spinner_style)
                .with_message(message);
            bar.enable_steady_tick(TICK);
            bar
        } else {
            ProgressBar::hidden()
        };
        Ok(Self {
            bar,
            bar_style,
            length: None,
        })
    }

    /// Records `done` of `total` bytes (`total` 0: unknown, keep spinning).
    pub fn update(&mut self, done: u64, total: u64) {
        if total > 0 && self.length != Some(total) {
            if self.length.is_none() {
                self.bar.disable_steady_tick();
                self.bar.set_style(self.bar_style.clone());
            }
            self.bar.set_length(total);
            self.length = Some(total);
        }
        self.bar.set_position(done);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // Whatever follows (the result on stdout, or an error on stderr) starts on a clean
        // line.
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_progress_tracks_without_drawing() {
        let mut progress = Progress::new("Importing x".into(), false).expect("progress");
        assert!(progress.bar.is_hidden());
        progress.update(10, 0);
        assert_eq!(progress.length, None);
        progress.update(100, 1000);
        assert_eq!(progress.length, Some(1000));
        assert_eq!(progress.bar.position(), 100);
        progress.update(1000, 1000);
        assert_eq!(progress.bar.position(), 1000);
    }

    #[test]
    fn templates_parse() {
        assert!(ProgressStyle::with_template(BAR).is_ok());
        assert!(ProgressStyle::with_template(SPINNER).is_ok());
    }
}
