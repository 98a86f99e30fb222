//! The deployment's log key: the one key that signs every village's checkpoints.

use super::*;

/// The deployment's log key: it signs every village's checkpoints, under the village's origin.
pub struct LogKey(SigningKey);

impl LogKey {
    /// A log key from its 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> LogKey {
        LogKey(SigningKey::from_bytes(&seed))
    }

    /// Loads the key from `path` (64 hex digits), creating a new random one only if no file is
    /// there. A file that is there but cannot be read as a key is an error that says so: the
    /// log key is never replaced, or every supervisor's pinned key would stop verifying.
    pub fn load_or_create(path: &Path) -> std::io::Result<LogKey> {
        match std::fs::read(path) {
            Ok(bytes) => LogKey::parse(&bytes).map_err(|why| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {why}; the log key is never replaced: restore the file from backup", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom(&mut seed)?;
                let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
                #[cfg(unix)]
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                std::io::Write::write_all(&mut f, jifen_ledger::hex(&seed).as_bytes())?;
                f.sync_all()?;
                Ok(LogKey::from_seed(seed))
            }
            Err(e) => Err(std::io::Error::new(e.kind(), format!("reading the log key {}: {e}", path.display()))),
        }
    }

    /// [`LogKey::load_or_create`] for a deployment whose database is `store`: a key is created
    /// only for a database that holds no checkpoint. One that does was signed by a key that
    /// only a backup can give back (deploy/BACKUP.md); a new one would break the key every
    /// supervisor and auditor pinned, so a missing key file is then an error that says so.
    pub async fn load_or_create_for(path: &Path, store: &Store) -> anyhow::Result<LogKey> {
        if !path.exists() && store.has_checkpoints().await? {
            anyhow::bail!(
                "{} does not exist, but the database holds checkpoints a log key signed: put that key file back \
                 (deploy/BACKUP.md) or point --data-dir at the directory that holds it. A new key is made only \
                 for a database that has none: it would break the key every supervisor and auditor pinned",
                path.display()
            );
        }
        Ok(LogKey::load_or_create(path)?)
    }

    /// Loads the key from `path`, which must exist (commands that only check what the log
    /// signed, such as `jifen rebuild`, never create one).
    pub fn load(path: &Path) -> std::io::Result<LogKey> {
        let bytes =
            std::fs::read(path).map_err(|e| std::io::Error::new(e.kind(), format!("reading the log key {}: {e}", path.display())))?;
        LogKey::parse(&bytes).map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {why}", path.display())))
    }

    /// A key file's contents: exactly 64 hex digits, with surrounding white space allowed.
    pub fn parse(bytes: &[u8]) -> Result<LogKey, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not text (expected 64 hex digits)".to_owned())?.trim();
        let seed = crate::hex32(text).ok_or_else(|| format!("expected 64 hex digits, found {} characters", text.chars().count()))?;
        Ok(LogKey::from_seed(seed))
    }

    /// The note signer for a village origin.
    pub fn signer(&self, origin: &str) -> NoteSigner {
        NoteSigner::new(origin, self.0.clone()).expect("origins are valid key names")
    }

    /// The key's public half.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// The note verifier key of the checkpoints signed under `origin` (its name, key id and
    /// public key), or why `origin` cannot name a note key.
    pub fn verifier(&self, origin: &str) -> Result<jifen_ledger::note::NoteVerifier, jifen_ledger::note::NoteError> {
        jifen_ledger::note::NoteVerifier::new(origin, self.public_key())
    }
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}
