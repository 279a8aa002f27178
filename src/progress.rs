//! Progress of the long commands (`--recover`, `--abort-stale-uploads`): a bar on a terminal
//! (items, bytes, rate, time left), plain lines otherwise.
//!
//! The lines are the same either way, each thing done or refused on a line of its own (stdout
//! for what was done, stderr for what was not); on a terminal they are printed above the bar,
//! which lives on stderr and is cleared at the end. Not on a terminal (a log, a pipe, cron),
//! there is no bar and no control character: only the lines.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the bar is redrawn: often enough to look alive, rarely enough to cost nothing.
const REFRESH: Duration = Duration::from_millis(200);

/// The progress of one command over `items` things of `bytes` bytes in all.
pub struct Progress {
    bar: Option<ProgressBar>,
    items: u64,
    done: u64,
    noun: &'static str,
    /// The bar measures bytes (else items).
    by_bytes: bool,
}

impl Progress {
    /// A bar over `items` (called `noun`, e.g. "files") and `bytes` (0: the items have no
    /// size, the bar counts items) when stderr is a terminal; plain lines otherwise.
    pub fn new(verb: &str, noun: &'static str, items: u64, bytes: u64) -> Progress {
        let bar = (std::io::stderr().is_terminal() && items > 0).then(|| {
            let (len, template) = if bytes > 0 {
                (
                    bytes,
                    "{prefix} [{wide_bar}] {msg} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
                )
            } else {
                (items, "{prefix} [{wide_bar}] {msg} {per_sec} {eta}")
            };
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let bar = ProgressBar::with_draw_target(
                Some(len),
                ProgressDrawTarget::stderr_with_hz((1000 / REFRESH.as_millis()) as u8),
            )
            .with_style(style)
            .with_prefix(verb.to_string());
            bar.enable_steady_tick(REFRESH);
            bar
        });
        let p = Progress {
            bar,
            items,
            done: 0,
            noun,
            by_bytes: bytes > 0,
        };
        p.show_count();
        p
    }

    fn show_count(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}/{} {}", self.done, self.items, self.noun));
        }
    }

    /// One item finished (`bytes` of it, or 0 when items have no size).
    pub fn item_done(&mut self, bytes: u64) {
        self.done += 1;
        if let Some(bar) = &self.bar {
            bar.inc(if self.by_bytes { bytes } else { 1 });
        }
        self.show_count();
    }

    /// A line on stdout (what was done), above the bar if there is one.
    pub fn say(&self, line: &str) {
        self.print(|| println!("{line}"));
    }

    /// A line on stderr (what was not done), above the bar if there is one.
    pub fn warn(&self, line: &str) {
        self.print(|| eprintln!("{line}"));
    }

    fn print(&self, f: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
