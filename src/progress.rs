//! Progress of the long commands (`--recover`, `--abort-stale-uploads`): a bar on a terminal
//! (items, bytes, rate, time left), plain lines otherwise.
//!
//! The lines are the same either way, each thing done or refused on a line of its own (stdout
//! for what was done, stderr for what was not); on a terminal they are printed above the bar,
//! which lives on stderr and is cleared at the end. Not on a terminal (a log, a pipe, cron),
//! there is no bar and no control character: only the lines.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A line on stdout. A reader gone (`s3mount --recover | head -3`) does not stop the work: the
/// Rust runtime ignores SIGPIPE, and `println!` panics on the failed write, which stopped a
/// recovery midway with exit status 101; the line is lost, the uploads go on.
pub fn out_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// A line on stderr, lost rather than a panic when stderr is gone (see [`out_line`]).
pub fn err_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

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
    /// Bytes of the items done.
    done_bytes: Arc<AtomicU64>,
    /// The thread adding the bytes of the item in progress ([`Progress::with_live_bytes`]).
    live: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
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
            done_bytes: Arc::new(AtomicU64::new(0)),
            live: None,
        };
        p.show_count();
        p
    }

    /// Move the bar within an item too: `in_flight()` is the bytes of the items in progress
    /// sent so far (read every refresh on a thread of its own; never below what was shown).
    pub fn with_live_bytes(mut self, in_flight: impl Fn() -> u64 + Send + 'static) -> Self {
        let Some(bar) = self.bar.clone().filter(|_| self.by_bytes) else {
            return self;
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, done) = (stop.clone(), self.done_bytes.clone());
        let thread = std::thread::Builder::new()
            .name("s3mount-progress".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    let at = done.load(Ordering::Relaxed) + in_flight();
                    if at > bar.position() {
                        bar.set_position(at.min(bar.length().unwrap_or(at)));
                    }
                    std::thread::park_timeout(REFRESH);
                }
            });
        if let Ok(t) = thread {
            self.live = Some((stop, t));
        }
        self
    }

    fn show_count(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}/{} {}", self.done, self.items, self.noun));
        }
    }

    /// One item finished (`bytes` of it, or 0 when items have no size).
    pub fn item_done(&mut self, bytes: u64) {
        self.done += 1;
        let done_bytes = self.done_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(bar) = &self.bar {
            if !self.by_bytes {
                bar.inc(1);
            } else if done_bytes > bar.position() {
                bar.set_position(done_bytes);
            }
        }
        self.show_count();
    }

    /// A line on stdout (what was done), above the bar if there is one.
    pub fn say(&self, line: &str) {
        self.print(|| out_line(line));
    }

    /// A line on stderr (what was not done), above the bar if there is one.
    pub fn warn(&self, line: &str) {
        self.print(|| err_line(line));
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
        if let Some((stop, thread)) = self.live.take() {
            stop.store(true, Ordering::Relaxed);
            thread.thread().unpark();
            let _ = thread.join();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
