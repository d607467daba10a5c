//! Progress of long CLI work (`projections rebuild`, `audit verify|replay|export`), always on
//! stderr so it never mixes with data on stdout: a bar when stderr is a terminal, otherwise a plain
//! line every [`PLAIN_EVERY`] (nothing at all for work that ends sooner).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line is written when stderr is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// How often the shown figure is refreshed from the counter.
const TICK: Duration = Duration::from_millis(200);

/// A progress display fed by a shared counter, refreshed by a background task until finished.
pub struct Progress {
    done: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Shows progress of `what` (e.g. `audit verify`) towards `total` units of `unit` (e.g.
    /// `events`), from the counter [`Self::counter`] returns.
    pub fn start(what: &str, unit: &'static str, total: u64) -> Self {
        Self::start_on(std::io::stderr().is_terminal(), what, unit, total)
    }

    fn start_on(terminal: bool, what: &str, unit: &'static str, total: u64) -> Self {
        let done = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let counter = done.clone();
        let what = what.to_string();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let bar = terminal.then(|| {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template(&format!(
                    "{what} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, {{eta}} left)"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar
            });
            let mut last_line = Instant::now();
            loop {
                let finished = tokio::time::timeout(TICK, &mut stopped).await.is_ok();
                let n = counter.load(Ordering::Relaxed);
                match &bar {
                    Some(bar) => bar.set_position(n),
                    None if !finished && last_line.elapsed() >= PLAIN_EVERY => {
                        last_line = Instant::now();
                        eprintln!("{}", plain_line(&what, unit, n, total, started.elapsed()));
                    }
                    None => {}
                }
                if finished {
                    if let Some(bar) = bar {
                        bar.finish_and_clear();
                    }
                    return;
                }
            }
        });
        Self {
            done,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The counter to advance (shareable with other tasks).
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }

    pub fn set(&self, n: u64) {
        self.done.store(n, Ordering::Relaxed);
    }

    /// Stops the display (clears the bar).
    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `audit verify: 120000/200000 events (60%), 45123 events/s, 3 s`.
pub fn plain_line(what: &str, unit: &str, n: u64, total: u64, elapsed: Duration) -> String {
    let pct = (n.min(total) * 100).checked_div(total).unwrap_or(100);
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { n as f64 / secs } else { 0.0 };
    format!(
        "{what}: {n}/{total} {unit} ({pct}%), {rate:.0} {unit}/s, {:.0} s",
        secs
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_how_far() {
        assert_eq!(
            plain_line("audit verify", "events", 50, 200, Duration::from_secs(2)),
            "audit verify: 50/200 events (25%), 25 events/s, 2 s"
        );
        assert_eq!(
            plain_line("x", "events", 0, 0, Duration::ZERO),
            "x: 0/0 events (100%), 0 events/s, 0 s"
        );
    }

    #[tokio::test]
    async fn a_plain_display_finishes_promptly() {
        let p = Progress::start_on(false, "t", "events", 10);
        let c = p.counter();
        c.fetch_add(10, Ordering::Relaxed);
        tokio::time::timeout(Duration::from_secs(5), p.finish())
            .await
            .expect("finishes");
    }
}
