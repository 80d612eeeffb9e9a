//! Logs through `tracing`; `RUST_LOG` sets the filter, `--log-format` the shape.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber (logs go to stderr; stdout is for command output).
/// `default` is the filter when `RUST_LOG` is unset.
pub fn init(format: LogFormat, default: &str) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // hickory logs every DNS query at info: one line per lookup of every app is noise, and a
    // way to flood the log. Its warnings stay, unless RUST_LOG asks for more.
    let asked = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("hickory"));
    if !asked && let Ok(quiet) = "hickory_server=warn".parse() {
        filter = filter.add_directive(quiet);
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A log line that cannot be written (a full disk under stderr) is lost, not reported on
    // stderr: that report would fail too, and `eprintln!` panics when it does — in whatever
    // task was logging, such as one answering a peer.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
