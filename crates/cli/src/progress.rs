//! Rendering a solve's events: a live view on a tty (indicatif), numbered
//! plain lines (`#5 [build 2/4] RUN make`, `CACHED`, `DONE 1.2s`) like
//! BuildKit's `--progress=plain`, or one JSON object per line for tools.
//!
//! Every step's output is kept whole (never clipped) so a failure can show
//! its last lines, and is written to the build's log file when one is given.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_solver::{Change, Event, EventSink, Stream, VertexId};

/// `--progress` as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressFlag {
    /// `tty` when stderr is a terminal, else `plain`.
    Auto,
    /// A live view: one line per running step.
    Tty,
    /// Numbered lines, every log line included.
    Plain,
    /// One JSON event per line.
    Json,
}

/// How progress is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live view.
    Tty,
    /// Plain lines.
    Plain,
    /// JSON lines.
    Json,
}

impl ProgressFlag {
    /// The mode for this process (auto looks at stderr).
    pub fn mode(self) -> Mode {
        match self {
            ProgressFlag::Auto if std::io::stderr().is_terminal() => Mode::Tty,
            ProgressFlag::Auto | ProgressFlag::Plain => Mode::Plain,
            ProgressFlag::Tty => Mode::Tty,
            ProgressFlag::Json => Mode::Json,
        }
    }
}

/// Lines of a failed step's output shown with the error.
pub const FAILURE_TAIL_LINES: usize = 20;

struct Step {
    number: usize,
    name: String,
    started: Option<Instant>,
    /// Everything the step printed.
    output: Vec<u8>,
    /// Bytes of `output` already printed as whole lines.
    printed: usize,
    bar: Option<ProgressBar>,
}

struct State {
    mode: Mode,
    out: Box<dyn Write + Send>,
    log_file: LogFile,
    steps: HashMap<VertexId, Step>,
    next_number: usize,
    multi: Option<MultiProgress>,
    started: Instant,
    cached: usize,
    done: usize,
    /// Internal vertices (no name): never shown.
    hidden: std::collections::HashSet<VertexId>,
}

/// The build's log file, created only once a step runs or the build fails:
/// a build served from the cache leaves no file behind (its lines, all
/// `CACHED`, stay in memory).
enum LogFile {
    None,
    Pending {
        path: PathBuf,
        lines: Vec<u8>,
    },
    Open(std::io::BufWriter<fs_err::File>),
    /// Creating it failed (reported once on the output).
    Failed,
}

impl LogFile {
    /// Create the file now (if it is pending) with what was logged so far;
    /// an error is returned once, to be shown.
    fn open(&mut self) -> Option<String> {
        let LogFile::Pending { path, lines } = self else {
            return None;
        };
        let opened = path
            .parent()
            .map_or(Ok(()), fs_err::create_dir_all)
            .and_then(|()| fs_err::File::create(&*path))
            .and_then(|f| {
                let mut w = std::io::BufWriter::new(f);
                w.write_all(lines)?;
                Ok(w)
            });
        match opened {
            Ok(w) => {
                *self = LogFile::Open(w);
                None
            }
            Err(e) => {
                *self = LogFile::Failed;
                Some(format!("WARNING: could not write the build log: {e}"))
            }
        }
    }

    fn write_line(&mut self, number: usize, text: &str) {
        match self {
            LogFile::Pending { lines, .. } => {
                let _ = writeln!(lines, "#{number} {text}");
            }
            LogFile::Open(w) => {
                let _ = writeln!(w, "#{number} {text}");
            }
            LogFile::None | LogFile::Failed => {}
        }
    }
}

/// Renders events; shared by the solver's threads.
pub struct Progress {
    state: Mutex<State>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").finish_non_exhaustive()
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Turn one pre-image change into a sentence about the Dockerfile.
pub fn describe_change(change: &Change) -> String {
    let field = change.field.as_str();
    let what = match (&change.before, &change.after) {
        (Some(_), None) => "removed",
        (None, Some(_)) => "added",
        _ => "changed",
    };
    let field = field.strip_prefix("op.").unwrap_or(field);
    if let Some(path) = field.strip_prefix("content.file:") {
        return format!("context file {path} {what}");
    }
    if field.starts_with("content.image") {
        return format!(
            "the base image digest changed ({} -> {})",
            change.before.as_deref().unwrap_or("none"),
            change.after.as_deref().unwrap_or("none")
        );
    }
    if let Some(n) = field
        .strip_prefix("input[")
        .and_then(|r| r.strip_suffix(']'))
    {
        return if n == "0" {
            "the step before it changed".to_owned()
        } else {
            format!("its input #{n} (another stage or step) changed")
        };
    }
    if let Some(name) = field.strip_prefix("env.") {
        if name == "#len" {
            return "the set of ENV/ARG variables changed".to_owned();
        }
        return format!(
            "variable {name} {what}: {} -> {}",
            change.before.as_deref().unwrap_or("(unset)"),
            change.after.as_deref().unwrap_or("(unset)")
        );
    }
    if field == "args" {
        return "the instruction changed".to_owned();
    }
    change.to_string()
}

impl Progress {
    /// A renderer writing to `out` (stderr in the CLI), and every step's
    /// output to `log_file` if given.
    pub fn new(
        mode: Mode,
        out: Box<dyn Write + Send>,
        log_file: Option<&Path>,
    ) -> std::io::Result<Arc<Progress>> {
        // Checked now (a store that cannot hold logs is an error before the
        // build starts); the file itself is created when a step runs.
        let log_file = match log_file {
            Some(path) => {
                if let Some(parent) = path.parent() {
                    fs_err::create_dir_all(parent)?;
                }
                LogFile::Pending {
                    path: path.to_path_buf(),
                    lines: Vec::new(),
                }
            }
            None => LogFile::None,
        };
        let multi = (mode == Mode::Tty)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Ok(Arc::new(Progress {
            state: Mutex::new(State {
                mode,
                out,
                log_file,
                steps: HashMap::new(),
                next_number: 1,
                multi,
                started: Instant::now(),
                cached: 0,
                done: 0,
                hidden: std::collections::HashSet::new(),
            }),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while rendering must not hide the build's result.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The sink to hand to the solver.
    pub fn sink(self: &Arc<Self>) -> EventSink {
        let me = Arc::clone(self);
        Arc::new(move |event| me.handle(&event))
    }

    /// The last `n` lines a step printed.
    pub fn tail(&self, vertex: VertexId, n: usize) -> Vec<String> {
        let state = self.lock();
        let Some(step) = state.steps.get(&vertex) else {
            return Vec::new();
        };
        let text = String::from_utf8_lossy(&step.output);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| (*l).to_owned())
            .collect()
    }

    /// Print a line outside any step (`#0 exporting to image`…).
    pub fn note(&self, text: &str) {
        let mut state = self.lock();
        match state.mode {
            Mode::Json => {
                let line = serde_json::json!({"type": "note", "text": text}).to_string();
                state.write_line(&line);
            }
            _ => state.write_line(text),
        }
    }

    /// Flush, end the live view, and print the summary line.
    pub fn finish(&self, ok: bool) {
        let mut state = self.lock();
        let elapsed = state.started.elapsed();
        if let Some(multi) = state.multi.take() {
            let _ = multi.clear();
        }
        let (cached, done) = (state.cached, state.done);
        let line = match state.mode {
            Mode::Json => serde_json::json!({
                "type": "summary", "ok": ok, "elapsed": elapsed.as_secs_f64(),
                "cached": cached, "executed": done,
            })
            .to_string(),
            _ => format!(
                "{} in {} ({done} step{} run, {cached} cached)",
                if ok { "Build finished" } else { "Build failed" },
                secs(elapsed),
                if done == 1 { "" } else { "s" },
            ),
        };
        state.write_line(&line);
        if !ok && let Some(warning) = state.log_file.open() {
            state.write_line(&warning);
        }
        if let LogFile::Open(log) = &mut state.log_file {
            let _ = log.flush();
        }
        let _ = state.out.flush();
    }

    /// Render one event.
    pub fn handle(&self, event: &Event) {
        let mut state = self.lock();
        state.handle(event);
    }
}

impl State {
    fn write_line(&mut self, line: &str) {
        if let Some(multi) = &self.multi {
            let _ = multi.println(line);
        } else {
            let _ = writeln!(self.out, "{line}");
        }
    }

    fn step(&mut self, vertex: VertexId, name: Option<&str>) -> &mut Step {
        let number = &mut self.next_number;
        self.steps.entry(vertex).or_insert_with(|| {
            let n = *number;
            *number += 1;
            Step {
                number: n,
                name: name.unwrap_or("").to_owned(),
                started: None,
                output: Vec::new(),
                printed: 0,
                bar: None,
            }
        })
    }

    fn json(&mut self, kind: &str, vertex: VertexId, extra: serde_json::Value) {
        let step = self.step(vertex, None);
        let mut obj = serde_json::json!({"type": kind, "step": step.number, "name": step.name});
        if let (Some(map), serde_json::Value::Object(more)) = (obj.as_object_mut(), extra) {
            map.extend(more);
        }
        let line = obj.to_string();
        self.write_line(&line);
    }

    fn log_to_file(&mut self, number: usize, text: &str) {
        self.log_file.write_line(number, text);
    }

    fn handle(&mut self, event: &Event) {
        let vertex = match event {
            Event::Cached { vertex, .. }
            | Event::Missed { vertex, .. }
            | Event::Started { vertex, .. }
            | Event::Log { vertex, .. }
            | Event::Finished { vertex, .. }
            | Event::Failed { vertex, .. }
            | Event::Cancelled { vertex } => *vertex,
        };
        if let Event::Cached { name, .. } | Event::Missed { name, .. } | Event::Started { name, .. } =
            event
            && name.is_empty()
        {
            self.hidden.insert(vertex);
        }
        // Internal steps are not shown, unless they fail.
        if self.hidden.contains(&vertex) && !matches!(event, Event::Failed { .. }) {
            return;
        }
        match event {
            Event::Cached { vertex, name, .. } => {
                self.cached += 1;
                let n = self.step(*vertex, Some(name)).number;
                self.log_to_file(n, &format!("{name}\n#{n} CACHED"));
                match self.mode {
                    Mode::Json => self.json("cached", *vertex, serde_json::json!({})),
                    _ => self.write_line(&format!("#{n} {name}\n#{n} CACHED\n")),
                }
            }
            Event::Missed {
                vertex,
                name,
                changes,
                known,
            } => {
                let n = self.step(*vertex, Some(name)).number;
                let reasons: Vec<String> = if !known {
                    vec![
                        "no earlier build of this step is known (or the cache was bypassed)".into(),
                    ]
                } else if changes.is_empty() {
                    vec!["its result is no longer in the store".into()]
                } else {
                    changes.iter().map(describe_change).collect()
                };
                if self.mode == Mode::Json {
                    self.json("missed", *vertex, serde_json::json!({"reasons": reasons}));
                } else {
                    let mut text = format!("#{n} {name}: cache miss because");
                    for r in &reasons {
                        let _ = write!(text, "\n#{n}   {r}");
                    }
                    self.write_line(&text);
                }
            }
            Event::Started { vertex, name } => {
                let mode = self.mode;
                let multi = self.multi.clone();
                let step = self.step(*vertex, Some(name));
                step.started = Some(Instant::now());
                let n = step.number;
                if let Some(multi) = multi {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} {prefix} {elapsed:>4} {wide_msg:.dim}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(format!("#{n} {name}"));
                    bar.enable_steady_tick(Duration::from_millis(100));
                    step.bar = Some(bar);
                }
                self.log_to_file(n, name);
                if let Some(warning) = self.log_file.open() {
                    self.write_line(&warning);
                }
                match mode {
                    Mode::Json => self.json("started", *vertex, serde_json::json!({})),
                    Mode::Plain => self.write_line(&format!("#{n} {name}")),
                    Mode::Tty => {}
                }
            }
            Event::Log {
                vertex,
                stream,
                data,
            } => self.log(*vertex, *stream, data),
            Event::Finished { vertex, elapsed } => {
                self.done += 1;
                self.flush_partial(*vertex);
                let step = self.step(*vertex, None);
                let n = step.number;
                let name = step.name.clone();
                if let Some(bar) = step.bar.take() {
                    bar.finish_and_clear();
                }
                self.log_to_file(n, &format!("DONE {}", secs(*elapsed)));
                match self.mode {
                    Mode::Json => self.json(
                        "finished",
                        *vertex,
                        serde_json::json!({"elapsed": elapsed.as_secs_f64()}),
                    ),
                    Mode::Plain => self.write_line(&format!("#{n} DONE {}\n", secs(*elapsed))),
                    Mode::Tty => self.write_line(&format!("#{n} {name} DONE {}", secs(*elapsed))),
                }
            }
            Event::Failed {
                vertex,
                elapsed,
                message,
            } => {
                self.flush_partial(*vertex);
                let step = self.step(*vertex, None);
                let n = step.number;
                let name = step.name.clone();
                if let Some(bar) = step.bar.take() {
                    bar.finish_and_clear();
                }
                self.log_to_file(n, &format!("ERROR {message}"));
                match self.mode {
                    Mode::Json => self.json(
                        "failed",
                        *vertex,
                        serde_json::json!({"elapsed": elapsed.as_secs_f64(), "error": message}),
                    ),
                    Mode::Plain => self.write_line(&format!("#{n} ERROR: {message}\n")),
                    Mode::Tty => self.write_line(&format!("#{n} {name} ERROR: {message}")),
                }
            }
            Event::Cancelled { vertex } => {
                self.flush_partial(*vertex);
                let step = self.step(*vertex, None);
                let n = step.number;
                let name = step.name.clone();
                if let Some(bar) = step.bar.take() {
                    bar.finish_and_clear();
                }
                self.log_to_file(n, "CANCELED");
                match self.mode {
                    Mode::Json => self.json("cancelled", *vertex, serde_json::json!({})),
                    Mode::Plain => self.write_line(&format!("#{n} CANCELED\n")),
                    Mode::Tty => self.write_line(&format!("#{n} {name} CANCELED")),
                }
            }
        }
    }

    fn log(&mut self, vertex: VertexId, stream: Stream, data: &[u8]) {
        let mode = self.mode;
        let step = self.step(vertex, None);
        step.output.extend_from_slice(data);
        let n = step.number;
        let started = step.started.unwrap_or_else(Instant::now);
        if mode == Mode::Json {
            let text = String::from_utf8_lossy(data).into_owned();
            self.write_json_log(vertex, stream, &text);
            return;
        }
        // Whole lines only; the rest waits for its newline (or the end).
        let Some(last_nl) = step.output.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        if last_nl < step.printed {
            return;
        }
        let chunk = String::from_utf8_lossy(&step.output[step.printed..=last_nl]).into_owned();
        step.printed = last_nl + 1;
        if let (Some(bar), Some(last)) = (&step.bar, chunk.lines().last()) {
            bar.set_message(last.to_owned());
        }
        let t = started.elapsed().as_secs_f64();
        for line in chunk.lines() {
            self.log_to_file(n, &format!("{t:.3} {line}"));
            if mode == Mode::Plain {
                self.write_line(&format!("#{n} {t:.3} {line}"));
            }
        }
    }

    fn write_json_log(&mut self, vertex: VertexId, stream: Stream, text: &str) {
        let n = self.step(vertex, None).number;
        self.log_to_file(n, text.trim_end_matches('\n'));
        self.json(
            "log",
            vertex,
            serde_json::json!({"stream": stream, "data": text}),
        );
    }

    /// Print a last line that had no newline.
    fn flush_partial(&mut self, vertex: VertexId) {
        let mode = self.mode;
        let step = self.step(vertex, None);
        if step.printed >= step.output.len() || mode == Mode::Json {
            return;
        }
        let rest = String::from_utf8_lossy(&step.output[step.printed..]).into_owned();
        step.printed = step.output.len();
        let n = step.number;
        let t = step.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        self.log_to_file(n, &format!("{t:.3} {rest}"));
        if mode == Mode::Plain {
            self.write_line(&format!("#{n} {t:.3} {rest}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn vertex(graph: &mut kiln_solver::Graph<kiln_solver::ops::KilnOp>) -> VertexId {
        graph.add(
            kiln_solver::ops::KilnOp::Merge(kiln_solver::ops::MergeOp),
            &[],
            kiln_solver::VertexOptions::default(),
        )
    }

    #[test]
    fn a_build_served_from_the_cache_writes_no_log_file() {
        let mut g = kiln_solver::Graph::new();
        let (a, b) = (vertex(&mut g), vertex(&mut g));
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/build.log");
        let p = Progress::new(Mode::Plain, Box::new(Buf::default()), Some(&log)).unwrap();
        p.handle(&Event::Cached {
            vertex: a,
            name: "[1/2] FROM base".into(),
            key: kiln_solver::Key::of_bytes(b"x"),
        });
        p.finish(true);
        assert!(!log.exists(), "a no-op build wrote {}", log.display());

        // A step that runs creates it, with the lines logged before it.
        let p = Progress::new(Mode::Plain, Box::new(Buf::default()), Some(&log)).unwrap();
        p.handle(&Event::Cached {
            vertex: a,
            name: "[1/2] FROM base".into(),
            key: kiln_solver::Key::of_bytes(b"x"),
        });
        p.handle(&Event::Started {
            vertex: b,
            name: "[2/2] RUN make".into(),
        });
        p.finish(true);
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains("#1 CACHED"), "{logged}");
        assert!(logged.contains("#2 [2/2] RUN make"), "{logged}");

        // A build failing before any step ran still leaves the log it names.
        let failed = dir.path().join("logs/failed.log");
        let p = Progress::new(Mode::Plain, Box::new(Buf::default()), Some(&failed)).unwrap();
        p.finish(false);
        assert!(failed.exists());
    }

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn plain_numbers_steps_and_keeps_whole_output() {
        let mut g = kiln_solver::Graph::new();
        let (a, b) = (vertex(&mut g), vertex(&mut g));
        let buf = Buf::default();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/build.log");
        let p = Progress::new(Mode::Plain, Box::new(buf.clone()), Some(&log)).unwrap();
        p.handle(&Event::Cached {
            vertex: a,
            name: "[1/2] FROM base".into(),
            key: kiln_solver::Key::of_bytes(b"x"),
        });
        p.handle(&Event::Started {
            vertex: b,
            name: "[2/2] RUN make".into(),
        });
        let long = "x".repeat(2 << 20);
        for chunk in ["hel", "lo\nwor", "ld\n", long.as_str(), "\nno newline"] {
            p.handle(&Event::Log {
                vertex: b,
                stream: Stream::Stdout,
                data: chunk.as_bytes().into(),
            });
        }
        p.handle(&Event::Failed {
            vertex: b,
            elapsed: Duration::from_millis(1500),
            message: "exit code 2".into(),
        });
        p.finish(false);
        let text = buf.text();
        // Log lines carry a timestamp (`#2 0.001 hello`): drop it, and
        // shorten the long line.
        let lines: Vec<String> = text
            .lines()
            .map(|l| match l.split_once(' ') {
                Some((n, rest)) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
                    let rest = rest.split_once(' ').map_or("", |r| r.1);
                    format!("{n} {}", &rest[..rest.len().min(12)])
                }
                _ => l.to_owned(),
            })
            .collect();
        assert_eq!(
            &lines[..9],
            [
                "#1 [1/2] FROM base",
                "#1 CACHED",
                "",
                "#2 [2/2] RUN make",
                "#2 hello",
                "#2 world",
                "#2 xxxxxxxxxxxx",
                "#2 no newline",
                "#2 ERROR: exit code 2",
            ]
        );
        assert!(
            lines.last().unwrap().starts_with("Build failed in "),
            "{text}"
        );
        // Output is complete, never clipped at 1 MiB, and tailable.
        assert_eq!(p.tail(b, 2), vec![long.clone(), "no newline".to_owned()]);
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains(&long));
        assert!(logged.contains("#2 ERROR exit code 2"));
    }

    #[test]
    fn json_is_one_object_per_line() {
        let mut g = kiln_solver::Graph::new();
        let a = vertex(&mut g);
        let buf = Buf::default();
        let p = Progress::new(Mode::Json, Box::new(buf.clone()), None).unwrap();
        p.handle(&Event::Started {
            vertex: a,
            name: "RUN x".into(),
        });
        p.handle(&Event::Log {
            vertex: a,
            stream: Stream::Stderr,
            data: b"oops\n"[..].into(),
        });
        p.handle(&Event::Finished {
            vertex: a,
            elapsed: Duration::from_millis(10),
        });
        p.finish(true);
        let events: Vec<serde_json::Value> = buf
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["started", "log", "finished", "summary"]);
        assert_eq!(events[1]["stream"], "stderr");
        assert_eq!(events[1]["data"], "oops\n");
        assert_eq!(events[1]["step"], 1);
        assert_eq!(events[3]["executed"], 1);
    }

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn changes_are_told_in_dockerfile_terms() {
        let c = |field: &str, before: Option<&str>, after: Option<&str>| {
            describe_change(&Change {
                field: field.into(),
                before: before.map(Into::into),
                after: after.map(Into::into),
            })
        };
        assert_eq!(
            c("content.file:src/main.rs", Some("a"), Some("b")),
            "context file src/main.rs changed"
        );
        assert_eq!(
            c("content.file:new.txt", None, Some("b")),
            "context file new.txt added"
        );
        assert_eq!(
            c("op.env.VERSION", Some("1"), Some("2")),
            "variable VERSION changed: 1 -> 2"
        );
        assert_eq!(
            c("input[0]", Some("a"), Some("b")),
            "the step before it changed"
        );
        assert_eq!(
            c("op.args", Some("a"), Some("b")),
            "the instruction changed"
        );
    }
}
