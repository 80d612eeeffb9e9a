//! The access log: one JSON line per logged request ([`AccessLogEntry`]), written to stderr or a
//! file by a thread of its own behind a bounded queue. A request only ever tries to queue its
//! line: when the queue is full (the file or pipe is slow or stalled) the line is dropped and
//! counted, and the request goes on as if nothing had happened.
//!
//! Which requests are logged is decided per request ([`crate::traffic::accesslog`]): by the
//! service's `accesslog` document, else by this configuration's `services`.

#![allow(
    clippy::disallowed_methods,
    reason = "the writer runs on its own thread, not on the runtime: blocking file I/O is its job"
)]

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use tracing::warn;

use crate::api::accesslog::AccessLogEntry;

/// Lines waiting for the writer by default; beyond them lines are dropped.
pub const DEFAULT_QUEUE: usize = 4096;

/// Where lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The process's standard error, one write per line.
    Stderr,
    /// Appended to this file (created if missing).
    File(PathBuf),
}

/// The `[access_log]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLogSettings {
    /// Where lines go.
    pub output: Output,
    /// Services logged without a document (`*`: every one).
    pub services: Vec<String>,
    /// Lines waiting for the writer at most.
    pub queue: usize,
}

impl Default for AccessLogSettings {
    fn default() -> Self {
        Self {
            output: Output::Stderr,
            services: Vec::new(),
            queue: DEFAULT_QUEUE,
        }
    }
}

/// A line on its way: the entry and when its request arrived (ms since the Unix epoch).
type Line = (u64, AccessLogEntry);

/// The node's access log. The writer thread starts with the first line.
#[derive(Debug, Default)]
pub struct AccessLog {
    settings: AccessLogSettings,
    queue: OnceLock<SyncSender<Line>>,
    counts: std::sync::Arc<Counts>,
}

/// What became of the lines.
#[derive(Debug, Default)]
pub struct Counts {
    /// Lines written.
    pub written: AtomicU64,
    /// Lines dropped: the queue was full, or the output failed.
    pub dropped: AtomicU64,
}

impl AccessLog {
    /// An access log with these settings.
    pub fn new(settings: AccessLogSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// Whether the configuration logs `service` (a document may say otherwise).
    pub fn configured(&self, service: &str) -> bool {
        self.settings
            .services
            .iter()
            .any(|s| s == "*" || s == service)
    }

    /// Queues the line of a request that arrived at `arrived_ms`; never waits.
    pub fn send(&self, arrived_ms: u64, entry: AccessLogEntry) {
        let queue = self.queue.get_or_init(|| self.start());
        match queue.try_send((arrived_ms, entry)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// What became of the lines so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    fn start(&self) -> SyncSender<Line> {
        let (tx, rx) = sync_channel(self.settings.queue.max(1));
        let (output, counts) = (self.settings.output.clone(), self.counts.clone());
        let spawned = std::thread::Builder::new()
            .name("murmur-access-log".into())
            .spawn(move || write_lines(&rx, &output, &counts));
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start the access log writer; access log lines are dropped");
        }
        tx
    }
}

/// Writes lines until every sender is gone.
fn write_lines(rx: &Receiver<Line>, output: &Output, counts: &Counts) {
    let mut sink: Box<dyn Write> = match output {
        Output::Stderr => Box::new(io::stderr()),
        Output::File(path) => match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => Box::new(BufWriter::with_capacity(64 * 1024, f)),
            Err(e) => {
                warn!(path = %path.display(), error = %e,
                    "cannot open the access log; its lines are dropped");
                for _ in rx.iter() {
                    counts.dropped.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        },
    };
    let mut line = Vec::with_capacity(512);
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        // Everything queued meanwhile goes out in one flush.
        while let Some((at, mut entry)) = next.take() {
            entry.time = rfc3339_ms(at);
            line.clear();
            let ok = serde_json::to_writer(&mut line, &entry).is_ok() && {
                line.push(b'\n');
                sink.write_all(&line).is_ok()
            };
            let counter = if ok { &counts.written } else { &counts.dropped };
            counter.fetch_add(1, Ordering::Relaxed);
            next = rx.try_recv().ok();
        }
        let flushed = sink.flush().is_ok();
        if flushed == failing {
            failing = !flushed;
            if failing {
                warn!("the access log cannot be written; lines are dropped until it can");
            }
        }
    }
}

/// `2026-01-02T03:04:05.678Z`
fn rfc3339_ms(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + Duration::from_millis(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_with_the_arrival_time() {
        assert_eq!(rfc3339_ms(1_767_323_045_678), "2026-01-02T03:04:05.678Z");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::new(AccessLogSettings {
            output: Output::File(path.clone()),
            services: vec!["web".into()],
            queue: 16,
        });
        assert!(log.configured("web") && !log.configured("api"));
        for i in 0..3 {
            log.send(
                1_767_323_045_678,
                AccessLogEntry {
                    service: "web".into(),
                    status: 200 + i,
                    ..AccessLogEntry::default()
                },
            );
        }
        let deadline = crate::clock::now() + Duration::from_secs(10);
        while log.counts().written.load(Ordering::Relaxed) < 3 {
            assert!(crate::clock::now() < deadline, "lines written");
            std::thread::yield_now();
        }
        // Flushed after the batch: read until all three are there.
        let lines = loop {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() == 3 || crate::clock::now() > deadline {
                break text;
            }
        };
        let entries: Vec<AccessLogEntry> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            entries.iter().map(|e| e.status).collect::<Vec<_>>(),
            [200, 201, 202]
        );
        assert_eq!(entries[0].time, "2026-01-02T03:04:05.678Z");
    }
}
