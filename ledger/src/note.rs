//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 signatures (type 0x01).
//!
//! ```text
//! <text, ending in "\n">
//! "\n"
//! "— " <key name> " " base64(key ID (4 bytes, big-endian) || Ed25519 signature over text) "\n"
//! ...
//! key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]
//! ```
//!
//! Verifier keys are written `<name>+<key ID as 8 hex digits>+base64(0x01 || public key)`,
//! the encoding of Go's `golang.org/x/mod/sumdb/note`, which opens the notes made here.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The signature type byte of Ed25519 note signatures.
pub const ALG_ED25519: u8 = 0x01;
/// The most signature lines a note may carry.
pub const MAX_NOTE_SIGNATURES: usize = 100;
/// The largest note accepted, in bytes.
pub const MAX_NOTE_LEN: usize = 1 << 20;

/// Why a note or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteError {
    #[error("key name {0:?} is empty or contains a space or '+'")]
    BadKeyName(String),
    #[error("malformed verifier key {0:?}")]
    BadVerifierKey(String),
    #[error("note is larger than {MAX_NOTE_LEN} bytes")]
    TooLarge,
    #[error("note is not valid UTF-8 or contains a control character other than newline")]
    BadCharacters,
    #[error("note text is empty or does not end in a newline")]
    BadText,
    #[error("note has no blank line separating text and signatures")]
    NoSignatureBlock,
    #[error("malformed signature line {0}")]
    BadSignatureLine(usize),
    #[error("note has more than {MAX_NOTE_SIGNATURES} signatures")]
    TooManySignatures,
    #[error("signature by known key {name} does not verify")]
    InvalidSignature { name: String },
    #[error("note has no verifiable signature by a known key")]
    NoKnownSignature,
}

/// Checks a key name: non-empty, no Unicode white space, no '+'.
pub fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::BadKeyName(name.to_owned()));
    }
    Ok(())
}

/// The key ID of an Ed25519 note key.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, ALG_ED25519]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A named Ed25519 note verifier key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    key: [u8; 32],
}

impl NoteVerifier {
    /// A verifier for `public_key` under `name`.
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<NoteVerifier, NoteError> {
        check_key_name(name)?;
        Ok(NoteVerifier { name: name.to_owned(), id: key_id(name, &public_key), key: public_key })
    }

    /// Parses `<name>+<hex key ID>+<base64(0x01 || key)>`, checking the key ID.
    pub fn parse(s: &str) -> Result<NoteVerifier, NoteError> {
        let bad = || NoteError::BadVerifierKey(s.to_owned());
        // The name and the ID contain no '+'; the standard base64 of the key may.
        let mut parts = s.splitn(3, '+');
        let (name, id, key) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(k)) => (n, i, k),
            _ => return Err(bad()),
        };
        if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| bad())?;
        let raw = B64.decode(key).map_err(|_| bad())?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(bad());
        }
        let v = NoteVerifier::new(name, raw[1..].try_into().expect("33 bytes"))?;
        if v.id != id {
            return Err(bad());
        }
        Ok(v)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The key ID.
    pub fn id(&self) -> u32 {
        self.id
    }
    /// The Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.key
    }

    /// Whether `sig` is this key's signature over `text` (strict Ed25519).
    pub fn verify(&self, text: &[u8], sig: &[u8; 64]) -> bool {
        VerifyingKey::from_bytes(&self.key).map(|k| k.verify_strict(text, &Signature::from_bytes(sig)).is_ok()).unwrap_or(false)
    }
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(&self.key);
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }
}

/// A named Ed25519 note signer.
pub struct NoteSigner {
    verifier: NoteVerifier,
    key: SigningKey,
}

impl NoteSigner {
    /// A signer named `name`.
    pub fn new(name: &str, key: SigningKey) -> Result<NoteSigner, NoteError> {
        let verifier = NoteVerifier::new(name, key.verifying_key().to_bytes())?;
        Ok(NoteSigner { verifier, key })
    }

    /// The matching verifier.
    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// A signature line for `text`: `— <name> base64(id || sig)\n`.
    pub fn sign_line(&self, text: &str) -> NoteSignature {
        let sig = self.key.sign(text.as_bytes()).to_bytes();
        NoteSignature { name: self.verifier.name.clone(), id: self.verifier.id, signature: sig.to_vec() }
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub id: u32,
    /// The signature bytes after the key ID (64 for Ed25519; other types may differ).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The signature line as it appears in a note, newline included.
    pub fn line(&self) -> String {
        let mut raw = self.id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.signature);
        format!("\u{2014} {} {}\n", self.name, B64.encode(raw))
    }
}

/// A signed note: its text and its signature lines, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

fn check_chars(s: &str) -> Result<(), NoteError> {
    if s.chars().any(|c| (c as u32) < 0x20 && c != '\n') {
        return Err(NoteError::BadCharacters);
    }
    Ok(())
}

impl Note {
    /// A note with `text` (non-empty, ending in a newline) and no signatures yet.
    pub fn new(text: String) -> Result<Note, NoteError> {
        check_chars(&text)?;
        if text.is_empty() || !text.ends_with('\n') {
            return Err(NoteError::BadText);
        }
        Ok(Note { text, signatures: Vec::new() })
    }

    /// The signed text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds a signature by `signer` (replacing an earlier one by the same key).
    pub fn sign(&mut self, signer: &NoteSigner) {
        self.add_signature(signer.sign_line(&self.text));
    }

    /// Adds a signature line (replacing an earlier one by the same name and key ID).
    pub fn add_signature(&mut self, sig: NoteSignature) {
        self.signatures.retain(|s| !(s.name == sig.name && s.id == sig.id));
        self.signatures.push(sig);
    }

    /// The note in its wire form.
    pub fn encode(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.line());
        }
        out
    }

    /// Parses a note strictly, without verifying any signature.
    pub fn parse(msg: &[u8]) -> Result<Note, NoteError> {
        if msg.len() > MAX_NOTE_LEN {
            return Err(NoteError::TooLarge);
        }
        let msg = std::str::from_utf8(msg).map_err(|_| NoteError::BadCharacters)?;
        check_chars(msg)?;
        let split = msg.rfind("\n\n").ok_or(NoteError::NoSignatureBlock)?;
        let text = &msg[..split + 1];
        let block = &msg[split + 2..];
        if !block.ends_with('\n') {
            return Err(NoteError::BadSignatureLine(1));
        }
        let mut signatures = Vec::new();
        for (i, line) in block[..block.len() - 1].split('\n').enumerate() {
            if signatures.len() == MAX_NOTE_SIGNATURES {
                return Err(NoteError::TooManySignatures);
            }
            let bad = || NoteError::BadSignatureLine(i + 1);
            let rest = line.strip_prefix("\u{2014} ").ok_or_else(bad)?;
            let (name, b64) = rest.split_once(' ').ok_or_else(bad)?;
            check_key_name(name).map_err(|_| bad())?;
            let raw = B64.decode(b64).map_err(|_| bad())?;
            if raw.len() < 5 {
                return Err(bad());
            }
            let id = u32::from_be_bytes(raw[..4].try_into().expect("4 bytes"));
            signatures.push(NoteSignature { name: name.to_owned(), id, signature: raw[4..].to_vec() });
        }
        if signatures.is_empty() {
            return Err(NoteError::BadSignatureLine(1));
        }
        Ok(Note { text: text.to_owned(), signatures })
    }

    /// Verifies the signatures by the known keys (c2sp signed-note "Signatures"): signatures
    /// of unknown keys are ignored, a failing signature of a known key rejects the note, and
    /// at least one known key must have signed. Returns the verifiers that signed.
    pub fn verify<'a>(&self, known: &'a [NoteVerifier]) -> Result<Vec<&'a NoteVerifier>, NoteError> {
        let mut signed = Vec::new();
        for s in &self.signatures {
            let Some(v) = known.iter().find(|v| v.name == s.name && v.id == s.id) else { continue };
            let sig: Option<[u8; 64]> = s.signature.as_slice().try_into().ok();
            match sig {
                Some(sig) if v.verify(self.text.as_bytes(), &sig) => {
                    if !signed.iter().any(|x: &&NoteVerifier| x.id == v.id && x.name == v.name) {
                        signed.push(v);
                    }
                }
                _ => return Err(NoteError::InvalidSignature { name: v.name.clone() }),
            }
        }
        if signed.is_empty() {
            return Err(NoteError::NoKnownSignature);
        }
        Ok(signed)
    }
}
