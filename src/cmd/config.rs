//! The settings of `jifen serve`, and of `rebuild` and `log-key`, which must find the same data
//! directory and database: built-in defaults, then the config file (`--config`, or
//! `JIFEN_CONFIG`), then `JIFEN_<SETTING>` environment variables, then the command line, each
//! over the one before (figment). `deploy/jifen.toml` lists every setting.
//!
//! Secrets need not be on the command line (where `ps` shows them): the database passwords can
//! be in files (`database_password_file`, `app_database_password_file`, for systemd's
//! `LoadCredential=` or a container's secrets), or in the environment or the config file as
//! part of the URL; the TLS key is a file.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use jifen::store::storage::{connect_external, start_embedded, Storage, APP_ROLE};
use jifen::store::Connection;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// How diagnostics are written to standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines (colours only on a terminal).
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

/// Every setting, resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the managed PostgreSQL cluster, the log key and the townships file live.
    pub data_dir: PathBuf,
    /// An external PostgreSQL (a libpq URL of a role owning the schema) instead of the
    /// managed cluster.
    pub database_url: Option<String>,
    /// The password of `database_url`'s role, in a file (its first line).
    pub database_password_file: Option<PathBuf>,
    /// How the service connects (default: `database_url` as the role `jifen_app`).
    pub app_database_url: Option<String>,
    /// The password of `app_database_url`'s role, in a file.
    pub app_database_password_file: Option<PathBuf>,
    /// The service's database connections.
    pub database_pool: usize,
    /// The gRPC address.
    pub listen: SocketAddr,
    /// Ledgers are "<origin>/village/<code>".
    pub deployment_origin: String,
    /// The township authority keys that may open villages (default: `townships` in the data
    /// directory).
    pub townships: Option<PathBuf>,
    /// Seal a village's decision state once this many records were appended since the last.
    pub snapshot_every: u64,
    /// TLS: the certificate chain (PEM) and its private key.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The Prometheus endpoint (`http://<address>/metrics`); none without it.
    pub metrics_listen: Option<SocketAddr>,
    /// How diagnostics are written.
    pub log_format: LogFormat,
}

/// The settings' names, as in the config file and after `JIFEN_` in the environment.
pub const NAMES: [&str; 15] = [
    "data_dir",
    "database_url",
    "database_password_file",
    "app_database_url",
    "app_database_password_file",
    "database_pool",
    "listen",
    "deployment_origin",
    "townships",
    "snapshot_every",
    "tls_cert",
    "tls_key",
    "metrics_listen",
    "log_format",
    // Read by `load` itself, not a setting.
    "config",
];

/// The data directory when none is set, absolute: systemd's `STATE_DIRECTORY` (the unit's
/// `StateDirectory=`), else `/var/lib/jifen` for root, else `$XDG_DATA_HOME/jifen` (or
/// `~/.local/share/jifen`).
pub fn default_data_dir() -> PathBuf {
    if let Some(state) = std::env::var_os("STATE_DIRECTORY") {
        if let Some(first) = state.to_string_lossy().split(':').next().filter(|p| p.starts_with('/')) {
            return PathBuf::from(first);
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/jifen");
    }
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    data_home.join("jifen")
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            data_dir: default_data_dir(),
            database_url: None,
            database_password_file: None,
            app_database_url: None,
            app_database_password_file: None,
            database_pool: 16,
            listen: "127.0.0.1:50051".parse().expect("an address"),
            deployment_origin: "jifen.example.cn".into(),
            townships: None,
            snapshot_every: jifen::server::villages::SNAPSHOT_EVERY,
            tls_cert: None,
            tls_key: None,
            metrics_listen: None,
            log_format: LogFormat::Text,
        }
    }
}

/// Loads the settings: defaults, the config file (`config`, else `JIFEN_CONFIG`; it must exist
/// when named), the environment, then `cli` (the settings given on the command line; a
/// serialized struct whose unset options are skipped).
pub fn load(config: Option<&Path>, cli: impl Serialize) -> anyhow::Result<Settings> {
    Ok(load_layers(config, cli)?.0)
}

/// [`load`], and the settings given anywhere (the config file, the environment or the command
/// line), not left to their defaults.
pub fn load_layers(config: Option<&Path>, cli: impl Serialize) -> anyhow::Result<(Settings, Figment)> {
    let mut figment = Figment::new();
    let named = config.map(Path::to_owned).or_else(|| std::env::var_os("JIFEN_CONFIG").map(PathBuf::from));
    if let Some(path) = &named {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("the config file {}: {e}", path.display()))?;
        warn_if_readable_secret(path, &text);
        figment = figment.merge(Toml::file_exact(path));
    }
    let given = figment.merge(Env::prefixed("JIFEN_").only(&NAMES).ignore(&["config"])).merge(Serialized::defaults(cli));
    let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
        .merge(given.clone())
        .extract()
        .map_err(|e| anyhow::anyhow!("{}", describe(e)))?;
    if settings.tls_cert.is_some() != settings.tls_key.is_some() {
        anyhow::bail!("tls_cert and tls_key go together: give both (--tls-cert and --tls-key, the config file, or JIFEN_TLS_CERT and JIFEN_TLS_KEY), or neither");
    }
    if settings.database_url.is_none() {
        for (set, name) in [
            (settings.app_database_url.is_some(), "app_database_url"),
            (settings.database_password_file.is_some(), "database_password_file"),
            (settings.app_database_password_file.is_some(), "app_database_password_file"),
        ] {
            anyhow::ensure!(!set, "{name} is for an external database: it needs database_url (the managed cluster has no password)");
        }
    }
    anyhow::ensure!(settings.database_pool > 0, "database_pool must be at least 1");
    Ok((settings, given))
}

/// figment's error, every one of them, each with where its value came from.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let from = e.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
            let place = match (&e.metadata, key.is_empty()) {
                (Some(_), false) if from.contains("environment") => format!("setting {key} from JIFEN_{}: ", key.to_uppercase()),
                (Some(m), false) => {
                    let source = m.source.as_ref().map(|s| format!(" ({s})")).unwrap_or_default();
                    format!("setting {key} from {from}{source}: ")
                }
                (Some(_), true) => format!("{from}: "),
                (None, _) => String::new(),
            };
            format!("{place}{}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A config file that others may read should not hold a password.
fn warn_if_readable_secret(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else { return };
    if meta.permissions().mode() & 0o007 != 0 && text.contains("password=") {
        eprintln!(
            "jifen: warning: {} holds a database password and every user may read it: chmod o-rwx it, or use database_password_file",
            path.display()
        );
    }
}

/// The first line of a password file.
fn password(path: &Path, name: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{name} {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or_default();
    anyhow::ensure!(!line.is_empty(), "{name} {}: the file is empty", path.display());
    Ok(line.to_owned())
}

impl Settings {
    /// The deployment's log key file.
    pub fn log_key(&self) -> PathBuf {
        self.data_dir.join("log.key")
    }

    /// The external database's connections (owner, service), passwords from their files.
    pub fn external(&self) -> anyhow::Result<Option<(Connection, Connection)>> {
        let Some(url) = &self.database_url else { return Ok(None) };
        let mut owner = Connection::parse(url).map_err(|e| anyhow::anyhow!("database_url: {e}"))?;
        if let Some(file) = &self.database_password_file {
            owner = owner.with_password(&password(file, "database_password_file")?);
        }
        let mut app = match &self.app_database_url {
            Some(url) => Connection::parse(url).map_err(|e| anyhow::anyhow!("app_database_url: {e}"))?,
            None => owner.with_user(APP_ROLE),
        };
        if let Some(file) = &self.app_database_password_file {
            app = app.with_password(&password(file, "app_database_password_file")?);
        }
        Ok(Some((owner, app)))
    }

    /// The storage, migrated, with a pool of `pool` connections.
    pub async fn start_storage(&self, pool: usize) -> anyhow::Result<Storage> {
        match self.external()? {
            Some((owner, app)) => connect_external(&owner, app, pool).await,
            None => {
                std::fs::create_dir_all(&self.data_dir)
                    .map_err(|e| anyhow::anyhow!("the data directory {}: {e}", self.data_dir.display()))?;
                start_embedded(&self.data_dir, pool).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_named_and_the_example_file_holds_them_all() {
        let value = serde_json::to_value(Settings::default()).unwrap();
        let fields: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(fields.len() + 1, NAMES.len());
        for field in fields {
            assert!(NAMES.contains(&field.as_str()), "{field} is not in NAMES");
        }
        let example = include_str!("../../deploy/jifen.toml");
        for name in &NAMES[..NAMES.len() - 1] {
            assert!(example.contains(&format!("{name} =")), "deploy/jifen.toml does not mention {name}");
        }
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default())).merge(Toml::string(example)).extract().unwrap();
        assert_eq!(settings.data_dir, PathBuf::from("/var/lib/jifen"));
    }

    #[test]
    fn the_default_data_directory_is_absolute() {
        assert!(default_data_dir().is_absolute(), "{}", default_data_dir().display());
    }
}
