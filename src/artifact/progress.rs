//! Progress: indicatif bars when stderr is a terminal, plain log lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// How fetches report progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// Bars on a terminal, plain lines otherwise.
    #[default]
    Auto,
    Bars,
    Plain,
    /// Only warnings and errors.
    Quiet,
}

pub(crate) struct Reporter {
    mode: Progress,
    mp: Option<MultiProgress>,
}

pub(crate) struct Task {
    name: String,
    mode: Progress,
    bar: Option<ProgressBar>,
    mp: Option<MultiProgress>,
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

impl Reporter {
    pub fn new(p: Progress) -> Reporter {
        let mode = match p {
            Progress::Auto if std::io::stderr().is_terminal() => Progress::Bars,
            Progress::Auto => Progress::Plain,
            m => m,
        };
        let mp = (mode == Progress::Bars).then(MultiProgress::new);
        Reporter { mode, mp }
    }

    /// Always shown (trust-on-first-use notices and the like).
    pub fn warn(&self, msg: &str) {
        let line = format!("ezimg: WARNING: {msg}");
        match &self.mp {
            Some(mp) => {
                if mp.println(&line).is_err() {
                    eprintln!("{line}");
                }
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn task(&self, name: &str, size: Option<u64>) -> Task {
        let bar = self.mp.as_ref().map(|mp| {
            let pb = mp.add(match size {
                Some(s) => ProgressBar::new(s),
                None => ProgressBar::new_spinner(),
            });
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix:>28!} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
            ) {
                pb.set_style(style);
            }
            pb.set_prefix(name.to_string());
            pb.enable_steady_tick(Duration::from_millis(200));
            pb
        });
        Task {
            name: name.to_string(),
            mode: self.mode,
            bar,
            mp: self.mp.clone(),
        }
    }
}

impl Task {
    fn line(&self, msg: &str) {
        match (&self.mp, self.mode) {
            (_, Progress::Quiet) => {}
            (Some(mp), _) => {
                if mp.println(format!("ezimg: {msg}")).is_err() {
                    eprintln!("ezimg: {msg}");
                }
            }
            (None, _) => eprintln!("ezimg: {msg}"),
        }
    }
    pub fn source(&self, src: &str, from: u64) {
        if self.bar.is_none() {
            if from > 0 {
                self.line(&format!(
                    "fetching {} from {src} (resuming at {from} bytes)",
                    self.name
                ));
            } else {
                self.line(&format!("fetching {} from {src}", self.name));
            }
        }
    }
    pub fn set_length(&self, len: Option<u64>) {
        if let (Some(b), Some(l)) = (&self.bar, len) {
            b.set_length(l);
        }
    }
    pub fn set_position(&self, pos: u64) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
    }
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    /// Retries and the like: a line above the bars, or a log line.
    pub fn note(&self, msg: &str) {
        self.line(msg);
    }
    /// The download is complete; `checked`: a pinned digest matched (else there was none to
    /// check: trust on first use, which the caller reports).
    pub fn done(&self, size: u64, took: Duration, checked: bool) {
        let rate = size as f64 / took.as_secs_f64().max(1e-6);
        let what = if checked {
            "digest verified"
        } else {
            "no digest to check it against (trust on first use)"
        };
        match &self.bar {
            Some(b) => b.finish_with_message(if checked { "verified" } else { "unchecked" }),
            None => self.line(&format!(
                "fetched {} ({}, {:.1}s, {}/s), {what}",
                self.name,
                human(size),
                took.as_secs_f64(),
                human(rate as u64)
            )),
        }
    }
    pub fn failed(&self) {
        if let Some(b) = &self.bar {
            b.abandon_with_message("failed");
        }
    }
}
