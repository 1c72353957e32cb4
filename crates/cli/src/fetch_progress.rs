//! Rendering the context crate's fetch events (a remote build context
//! being downloaded or fetched with git) before a build starts: on a tty an
//! indicatif bar (bytes, total, rate, time left) for a download and a
//! spinner showing git's current step and its own progress line; plain
//! lines (at most one a second per download) otherwise; JSON lines with
//! `--progress json`.

use std::io::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_context::Progress as Event;

use crate::humanize;
use crate::progress::Mode;

/// Shows one context fetch; shared with the opener's callback.
pub struct FetchView {
    state: Mutex<State>,
}

struct State {
    mode: Mode,
    quiet: bool,
    started: Instant,
    bar: Option<(Kind, ProgressBar)>,
    /// When a plain/json download line was last printed.
    last_line: Option<Instant>,
    /// The last git step printed as a plain line (`fetch`, …), with git's
    /// progress phase (`Receiving objects`).
    last_git: Option<(&'static str, String)>,
    /// What was fetched, for the closing line.
    what: Option<String>,
    bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Download,
    Git,
}

fn stderr_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

impl FetchView {
    /// A view for `mode`; nothing is shown when `quiet`.
    pub fn new(mode: Mode, quiet: bool) -> Arc<FetchView> {
        Arc::new(FetchView {
            state: Mutex::new(State {
                mode,
                quiet,
                started: Instant::now(),
                bar: None,
                last_line: None,
                last_git: None,
                what: None,
                bytes: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Render one event.
    pub fn handle(&self, event: &Event) {
        let mut s = self.lock();
        if s.quiet {
            return;
        }
        match s.mode {
            Mode::Tty => s.tty(event),
            Mode::Plain => s.plain(event),
            Mode::Json => s.json(event),
        }
    }

    /// End the view: the bar is replaced by one line saying what was
    /// fetched (nothing is printed when nothing was fetched).
    pub fn finish(&self, ok: bool) {
        let mut s = self.lock();
        let elapsed = s.started.elapsed();
        if let Some((_, bar)) = s.bar.take() {
            bar.finish_and_clear();
        }
        let Some(what) = s.what.take() else {
            return;
        };
        if s.quiet || !ok {
            return;
        }
        let size = s
            .bytes
            .map(|b| format!(" ({})", humanize::size(b)))
            .unwrap_or_default();
        let line = format!("#0 fetched {what}{size} in {:.1}s", elapsed.as_secs_f64());
        match s.mode {
            Mode::Json => stderr_line(
                &serde_json::json!({"type": "context", "event": "fetched", "source": what,
                    "bytes": s.bytes, "elapsed": elapsed.as_secs_f64()})
                .to_string(),
            ),
            _ => stderr_line(&line),
        }
    }
}

impl State {
    fn bar(&mut self, kind: Kind, make: impl FnOnce() -> ProgressBar) -> &ProgressBar {
        if self.bar.as_ref().is_none_or(|(k, _)| *k != kind) {
            if let Some((_, old)) = self.bar.take() {
                old.finish_and_clear();
            }
            let bar = make();
            bar.set_draw_target(ProgressDrawTarget::stderr());
            self.bar = Some((kind, bar));
        }
        &self.bar.as_ref().expect("just set").1
    }

    fn tty(&mut self, event: &Event) {
        match event {
            Event::Download { url, done, total } => {
                self.what = Some(url.clone());
                self.bytes = Some(*done);
                let (url, total) = (url.clone(), *total);
                let bar = self.bar(Kind::Download, || {
                    let (bar, template) = match total {
                        Some(t) => (
                            ProgressBar::new(t),
                            "{spinner} downloading [{bar:20}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {wide_msg}",
                        ),
                        None => (
                            ProgressBar::new_spinner(),
                            "{spinner} downloading {bytes} {binary_bytes_per_sec} {wide_msg}",
                        ),
                    };
                    if let Ok(style) = ProgressStyle::with_template(template) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar.set_message(url);
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                bar.set_position(*done);
            }
            Event::Git { url, step } => {
                self.what = Some(url.clone());
                let bar = self.git_spinner();
                bar.set_message(format!("{url}: {step}"));
            }
            Event::GitStatus { url, step, text } => {
                self.what = Some(url.clone());
                let bar = self.git_spinner();
                bar.set_message(format!("{url}: {step}: {text}"));
            }
            Event::Cached { source } => {
                if let Some((_, bar)) = self.bar.take() {
                    bar.finish_and_clear();
                }
                self.what = None;
                stderr_line(&format!("#0 using the cached context {source}"));
            }
        }
    }

    fn git_spinner(&mut self) -> &ProgressBar {
        self.bar(Kind::Git, || {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} git {elapsed} {wide_msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        })
    }

    /// Whether a download line is due (the first, the last, and at most
    /// one a second between).
    fn due(&mut self, done: u64, total: Option<u64>) -> bool {
        let last = total.is_some_and(|t| done >= t);
        let due = last
            || self
                .last_line
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due {
            self.last_line = Some(Instant::now());
        }
        due
    }

    /// Whether a git line is new enough to print: each step, and each
    /// phase of git's progress once (its percentages would be hundreds of
    /// lines), plus its closing `done` line.
    fn git_due(&mut self, step: &'static str, text: &str) -> bool {
        let phase = text.split(':').next().unwrap_or(text).to_owned();
        let new = self
            .last_git
            .as_ref()
            .is_none_or(|(s, p)| *s != step || *p != phase);
        if new || text.ends_with("done.") {
            self.last_git = Some((step, phase));
            return true;
        }
        false
    }

    fn plain(&mut self, event: &Event) {
        match event {
            Event::Download { url, done, total } => {
                self.what = Some(url.clone());
                self.bytes = Some(*done);
                if self.due(*done, *total) {
                    let of = total
                        .map(|t| format!(" of {}", humanize::size(t)))
                        .unwrap_or_default();
                    stderr_line(&format!(
                        "#0 downloading {url}: {}{of}",
                        humanize::size(*done)
                    ));
                }
            }
            Event::Git { url, step } => {
                self.what = Some(url.clone());
                self.last_git = Some((step, String::new()));
                stderr_line(&format!("#0 git {step} {url}"));
            }
            Event::GitStatus { url, step, text } => {
                self.what = Some(url.clone());
                if self.git_due(step, text) {
                    stderr_line(&format!("#0 git {step} {url}: {text}"));
                }
            }
            Event::Cached { source } => {
                self.what = None;
                stderr_line(&format!("#0 using the cached context {source}"));
            }
        }
    }

    fn json(&mut self, event: &Event) {
        let line = match event {
            Event::Download { url, done, total } => {
                self.what = Some(url.clone());
                self.bytes = Some(*done);
                if !self.due(*done, *total) {
                    return;
                }
                serde_json::json!({"type": "context", "event": "download", "url": url,
                    "done": done, "total": total})
            }
            Event::Git { url, step } => {
                self.what = Some(url.clone());
                serde_json::json!({"type": "context", "event": "git", "url": url, "step": step})
            }
            Event::GitStatus { url, step, text } => {
                self.what = Some(url.clone());
                if !self.git_due(step, text) {
                    return;
                }
                serde_json::json!({"type": "context", "event": "git", "url": url, "step": step,
                    "text": text})
            }
            Event::Cached { source } => {
                self.what = None;
                serde_json::json!({"type": "context", "event": "cached", "source": source})
            }
        };
        stderr_line(&line.to_string());
    }
}
