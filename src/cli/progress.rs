//! Progress of a transfer: a bar for a person at a terminal, `--json` lines for scripts.

use std::time::Duration;

use serde_json::json;

use super::emit;

/// A progress bar on stderr when a person is watching; nothing otherwise.
pub fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// A progress callback that drives a bar.
pub(super) type Tick = Box<dyn Fn(u64, u64) + Send + Sync>;

/// How often `--json` progress lines are printed at most.
pub(super) const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Runs a transfer with progress: a bar when stderr is a terminal, or with `--json` lines
/// `{"event":"progress","done":N,"total":N}` on stdout (a few a second, and the last one);
/// the transfer says the total once it knows it.
pub(crate) async fn with_progress<T, F>(json: bool, run: impl FnOnce(Tick) -> F) -> T
where
    F: std::future::Future<Output = T>,
{
    let bar = if json { None } else { progress_bar(0) };
    let shown = bar.clone();
    let last = std::sync::Mutex::new(None::<std::time::Instant>);
    let result = run(Box::new(move |done, total| {
        if let Some(bar) = &shown {
            bar.set_length(total);
            bar.set_position(done);
        }
        if json {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) || done == total;
            if due {
                *last = Some(std::time::Instant::now());
                emit(json!({"event": "progress", "done": done, "total": total}));
            }
        }
    }))
    .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}
