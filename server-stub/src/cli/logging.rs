//! The server's log on stderr: the `--log-format` choice, and the filter (`RUST_LOG`, default
//! `info`) with rustls's per-connection complaints about a client's ClientHello kept out of it
//! unless asked for.

use clap::ValueEnum;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Added to every log filter that does not name rustls itself. rustls logs a WARN for each
/// malformed part of a ClientHello that it ignores and goes on, such as an IP address sent as
/// the server name (wrk does it, and `openssl s_client -servername 127.0.0.1`). Left at warn,
/// any client could write one line per connection into the server's log, with nothing in it
/// for an operator to act on. `RUST_LOG=info,rustls=warn` brings those lines back.
const QUIET_RUSTLS: &str = "rustls::msgs=error";

/// The log filter: `RUST_LOG` (or `info` when it is unset or unreadable), plus
/// [`QUIET_RUSTLS`] unless it names rustls.
fn log_filter(env: Option<&str>) -> String {
    let base = match env.map(str::trim) {
        Some(directives) if !directives.is_empty() => directives,
        _ => "info",
    };
    if base.contains("rustls") {
        base.to_owned()
    } else {
        format!("{base},{QUIET_RUSTLS}")
    }
}

pub(crate) fn init_logging(format: LogFormat) {
    let env = std::env::var("RUST_LOG").ok();
    let filter = tracing_subscriber::EnvFilter::try_new(log_filter(env.as_deref()))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_filter(None)));
    // Colour only on a terminal, never with NO_COLOR set (no-color.org): a log file or a CI
    // console must not fill with escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_complaints_are_left_out_unless_rustls_is_named() {
        assert_eq!(log_filter(None), "info,rustls::msgs=error");
        assert_eq!(log_filter(Some("  ")), "info,rustls::msgs=error");
        assert_eq!(log_filter(Some("warn")), "warn,rustls::msgs=error");
        assert_eq!(log_filter(Some("info,rustls=warn")), "info,rustls=warn");
    }
}
