//! Shared shell pieces: key and bundle loading, progress bars, human sizes, peak memory.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use abdelta::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress on stderr: a bar for people (drawn only on a terminal, and only once the work has
/// lasted a second), or, with `--json`, one JSON event per line for an agent
/// (`{"event":"progress","phase":…,"done":…,"total":…}`, at most five a second per phase,
/// plus each phase's last).
pub struct Bar {
    bar: ProgressBar,
    started: Instant,
    events: bool,
    /// Current phase, whether the bar is shown, when the last event was printed.
    state: Mutex<(&'static str, bool, Option<Instant>)>,
}

impl Bar {
    /// A bar for people (`events` false) or an event stream for agents.
    pub fn new(events: bool) -> Bar {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>14} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Bar {
            bar,
            started: Instant::now(),
            events,
            state: Mutex::new(("", false, None)),
        }
    }

    /// Feeds one progress event.
    pub fn update(&self, p: Progress) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let (phase, shown, last) = &mut *state;
        if self.events {
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_millis(200));
            if *phase != p.phase || due || p.done == p.total {
                *phase = p.phase;
                *last = Some(Instant::now());
                let event = serde_json::json!({"event": "progress", "phase": p.phase, "done": p.done, "total": p.total});
                eprintln!("{event}");
            }
            return;
        }
        if !*shown && self.started.elapsed() >= Duration::from_secs(1) {
            *shown = true;
            // Hidden by indicatif itself when stderr is not a terminal.
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.bar.enable_steady_tick(Duration::from_millis(200));
        }
        if *phase != p.phase {
            *phase = p.phase;
            self.bar.set_message(p.phase);
            self.bar.reset();
        }
        self.bar.set_length(p.total);
        self.bar.set_position(p.done);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `1.5 MiB`-style sizes.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS.get(unit).unwrap_or(&"?"))
    }
}

/// A memory figure of this process from /proc/self/status, in bytes, where Linux reports it:
/// `VmHWM` (peak resident set, including mapped file pages) or
/// `RssAnon` (anonymous memory resident now: buffers, tables, heap).
pub fn memory(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The peak of this process's anonymous resident memory (`RssAnon`: buffers, tables, heap;
/// not mapped file pages), sampled every 10 ms by a background thread
/// until [`AnonPeak::stop`]. Linux keeps a peak only for the whole resident set (`VmHWM`).
pub struct AnonPeak {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl AnonPeak {
    /// Starts sampling.
    pub fn start() -> AnonPeak {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            loop {
                peak = peak.max(memory("RssAnon").unwrap_or(0));
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        AnonPeak { stop, thread }
    }

    /// Stops sampling; the peak in bytes (`None` where Linux does not report it).
    pub fn stop(self) -> Option<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().ok().filter(|&p| p > 0)
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` with its noun, singular or plural: "1 range", "3 ranges".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Whether this run prints JSON (`--json`): events on stderr are then JSON lines too.
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records that this run prints JSON.
pub fn set_json(json: bool) {
    JSON.store(json, std::sync::atomic::Ordering::Relaxed);
}

/// Shows each HTTP retry on stderr: a line for people, or a JSON event with `--json`.
pub fn retry_hook() -> abdelta::fetch::RetryHook {
    abdelta::fetch::RetryHook(std::sync::Arc::new(|r: &abdelta::fetch::Retry| {
        if JSON.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!(
                "{}",
                serde_json::json!({"event": "retry", "attempt": r.attempt, "of": r.of, "wait_seconds": r.wait.as_secs_f64(), "why": r.why})
            );
        } else {
            eprintln!(
                "abdelta: retrying in {:.1} s (attempt {} of {}): {}",
                r.wait.as_secs_f64(),
                r.attempt,
                r.of,
                r.why
            );
        }
    }))
}

/// Asked to stop by Ctrl-C (SIGINT) or SIGTERM: the running install or apply stops between
/// pieces, keeps what arrived, and exits 130. A second signal exits at once.
static INTERRUPT: std::sync::OnceLock<abdelta::updater::Cancel> = std::sync::OnceLock::new();

/// The cancellation Ctrl-C triggers, installing the handler on first use.
pub fn interrupt() -> abdelta::updater::Cancel {
    INTERRUPT
        .get_or_init(|| {
            let cancel = abdelta::updater::Cancel::default();
            let on_signal = cancel.clone();
            let installed = ctrlc::set_handler(move || {
                if on_signal.is_cancelled() {
                    std::process::exit(130);
                }
                eprintln!(
                    "abdelta: interrupted: stopping; what arrived is kept, and the same command resumes"
                );
                on_signal.cancel();
            });
            if let Err(e) = installed {
                eprintln!("abdelta: note: Ctrl-C will not stop cleanly: {e}");
            }
            cancel
        })
        .clone()
}
