//! Docker's container records (`<data-root>/containers/<id>/config.v2.json`): name, image, state, labels and
//! log file. Only the fields the audit uses are parsed, so a newer engine's extra fields never break it.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One container's record.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerConfig {
    /// 64-hex container id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Name with the leading `/`.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// Image id (`sha256:…`).
    #[serde(rename = "Image", default)]
    pub image: String,
    /// Creation time, RFC 3339.
    #[serde(rename = "Created", default)]
    pub created: Option<String>,
    /// Run state.
    #[serde(rename = "State", default)]
    pub state: ContainerState,
    /// The configuration the container was created with.
    #[serde(rename = "Config", default)]
    pub config: ContainerSpec,
    /// The json-file log, if the container logs to one.
    #[serde(rename = "LogPath", default)]
    pub log_path: Option<String>,
    /// Storage driver the container was created with.
    #[serde(rename = "Driver", default)]
    pub driver: Option<String>,
    /// Its volumes and bind mounts (`MountPoints`: path in the container → `Source`, `Destination`,
    /// `Type`, `Name`, …), kept as JSON: only [`super::nested`] reads it, leniently, so an odd entry never
    /// makes the whole record unreadable.
    #[serde(rename = "MountPoints", default)]
    pub mount_points: Option<serde_json::Value>,
}

/// `State` of config.v2.json.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    /// The process is running (also true while paused or restarting).
    #[serde(default)]
    pub running: bool,
    /// Frozen.
    #[serde(default)]
    pub paused: bool,
    /// Being restarted by its restart policy.
    #[serde(default)]
    pub restarting: bool,
    /// Being removed.
    #[serde(default)]
    pub removal_in_progress: bool,
    /// Removal failed half way.
    #[serde(default)]
    pub dead: bool,
    /// Host pid of the container's first process while running.
    #[serde(default)]
    pub pid: i64,
    /// Exit code of the last run.
    #[serde(default)]
    pub exit_code: i64,
    /// Start of the last run; Go's zero time when never started.
    #[serde(default)]
    pub started_at: Option<String>,
    /// End of the last run.
    #[serde(default)]
    pub finished_at: Option<String>,
}

impl ContainerState {
    /// The engine's state word, derived exactly as moby's `State.StateString` derives it.
    pub fn word(&self) -> &'static str {
        if self.running {
            if self.paused {
                return "paused";
            }
            if self.restarting {
                return "restarting";
            }
            return "running";
        }
        if self.removal_in_progress {
            return "removing";
        }
        if self.dead {
            return "dead";
        }
        match self.started_at.as_deref() {
            None | Some("") => "created",
            Some(t) if t.starts_with("0001-01-01") => "created",
            Some(_) => "exited",
        }
    }
}

/// `Config` of config.v2.json.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerSpec {
    /// The image as the user typed it (`bb:1`, or an id).
    #[serde(rename = "Image", default)]
    pub image: String,
    /// Labels (compose labels among them).
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Why a container record could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ContainerConfigError {
    /// The file could not be read, or was refused (a FIFO, a device, a symlink, too large).
    #[error("cannot read {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: crate::hostfs::HostReadError,
    },
    /// The file is not a container record.
    #[error("cannot parse {}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's reason.
        source: serde_json::Error,
    },
}

impl ContainerConfigError {
    /// The finding code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            ContainerConfigError::Read { source, .. } => source.code("container_config_unparsable"),
            ContainerConfigError::Parse { .. } => "container_config_unparsable",
        }
    }
}

/// Reads and parses one `config.v2.json` under `store`.
pub fn read_container_config(
    store: &crate::hostfs::StoreDir,
    path: &Path,
) -> Result<ContainerConfig, ContainerConfigError> {
    let bytes = store
        .read(path, crate::hostfs::FileKind::Record)
        .map_err(|source| ContainerConfigError::Read { path: path.to_owned(), source })?;
    serde_json::from_slice(&bytes).map_err(|source| ContainerConfigError::Parse { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: &str) -> &'static str {
        serde_json::from_str::<ContainerState>(json).expect("test JSON parses").word()
    }

    #[test]
    fn state_words_follow_moby() {
        assert_eq!(state(r#"{"Running":true,"StartedAt":"2026-11-28T16:33:02Z"}"#), "running");
        assert_eq!(state(r#"{"Running":true,"Paused":true}"#), "paused");
        assert_eq!(state(r#"{"Running":true,"Restarting":true}"#), "restarting");
        assert_eq!(state(r#"{"StartedAt":"0001-01-01T00:00:00Z"}"#), "created");
        assert_eq!(state(r#"{"StartedAt":"2026-11-28T16:33:02Z"}"#), "exited");
        assert_eq!(state(r#"{"Dead":true,"StartedAt":"2026-11-28T16:33:02Z"}"#), "dead");
        assert_eq!(state(r#"{"RemovalInProgress":true}"#), "removing");
    }
}
