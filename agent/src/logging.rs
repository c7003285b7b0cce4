//! The agent's own log: human lines on standard error (the journal, under systemd, which stamps its own
//! time), filtered by `RUST_LOG` when set, else by the configuration's `log_level`, which a reload can change.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

/// Changes the log level after start; does nothing when `RUST_LOG` chose the filter.
pub struct LogControl {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
}

/// Installs the logger. `level` is a checked `log_level` value.
pub fn init(level: &str) -> LogControl {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let (filter, env_error) = match &from_env {
        Some(v) => match EnvFilter::try_new(v) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new(level), Some(format!("ignoring RUST_LOG={v}: {e}"))),
        },
        None => (EnvFilter::new(level), None),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let layer = fmt::layer().with_writer(std::io::stderr).with_ansi(false).with_target(false);
    // JOURNAL_STREAM is set when standard error is the journal, which adds its own timestamps.
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if std::env::var_os("JOURNAL_STREAM").is_some() {
        registry.with(layer.without_time()).try_init()
    } else {
        registry.with(layer).try_init()
    };
    if let Err(e) = installed {
        eprintln!("ovlaudit: cannot install the logger: {e}");
    }
    if let Some(e) = env_error {
        tracing::warn!("{e}");
    }
    let env_chose = from_env.is_some();
    LogControl { handle: if env_chose { None } else { Some(handle) } }
}

impl LogControl {
    /// Switches to `level` (a checked `log_level` value).
    pub fn set(&self, level: &str) {
        if let Some(h) = &self.handle {
            if let Err(e) = h.reload(EnvFilter::new(level)) {
                tracing::warn!("cannot change the log level to {level}: {e}");
            }
        }
    }
}
