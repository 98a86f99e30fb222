//! SHA-256 digests and the domain-separation tags of every hashed or signed byte string.
//!
//! Each tag is followed by a single 0x00 byte in the hashed input, so no tag is a prefix of
//! another tag's input (docs/FORMAT.md, "Domain separation").

use sha2::{Digest, Sha256};
use std::fmt;

/// Tag of the record hash: `SHA-256("jifen/record/v1" || 0x00 || record bytes)`.
pub const RECORD_TAG: &[u8] = b"jifen/record/v1";
/// Tag of the event signature message: `"jifen/event/v1" || 0x00 || body`.
pub const EVENT_TAG: &[u8] = b"jifen/event/v1";
/// Tag of the balance digest: `SHA-256("jifen/balances/v1" || 0x00 || balance table)`.
pub const BALANCES_TAG: &[u8] = b"jifen/balances/v1";

/// A SHA-256 digest.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash, used as `prev_hash` of the record at seq 0.
    pub const ZERO: Hash = Hash([0u8; 32]);

    /// SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Hash {
        Hash(Sha256::digest(data).into())
    }

    /// SHA-256 of `tag || 0x00 || data`.
    pub fn tagged(tag: &[u8], data: &[u8]) -> Hash {
        let mut h = Sha256::new();
        h.update(tag);
        h.update([0u8]);
        h.update(data);
        Hash(h.finalize().into())
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hexadecimal.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        <[u8; 32]>::try_from(bytes).ok().map(Hash)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
