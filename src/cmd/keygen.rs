//! `jifen keygen`: a signing key for an actor (or a supervisor's note key).

use anyhow::Context;
use jifen_ledger::note::NoteVerifier;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Where to write the key file (created with mode 0600; never overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Also print the signed-note verifier key under this key name (e.g.
    /// "jifen.example.cn/witness/supervisor-01" for a supervisor who cosigns checkpoints).
    #[arg(long)]
    note_name: Option<String>,
}

/// Writes a new Ed25519 key: the 32-byte seed in hex (private), and prints the public key.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let public = jifen_ledger::hex(key.verifying_key().as_bytes());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&args.out)
        .with_context(|| format!("creating {} (an existing key is never overwritten)", args.out.display()))?;
    #[cfg(unix)]
    std::fs::set_permissions(&args.out, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    writeln!(f, "{}", jifen_ledger::hex(&seed))?;
    println!("private key written to {} (keep it secret)", args.out.display());
    println!("public key: {public}");
    if let Some(name) = args.note_name {
        let v = NoteVerifier::new(&name, key.verifying_key().to_bytes())?;
        println!("note verifier key: {v}");
    }
    Ok(())
}
