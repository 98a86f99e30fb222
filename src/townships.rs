//! The deployment's townships: which township authority keys may open a village ledger.
//!
//! A village ledger is opened (`LedgerOpened`) by its township's authority key. Without a list
//! of those keys, whoever reaches the port could open any unopened village code with a key of
//! their own and so squat a real village. The deployment therefore enrols, per township (the
//! first 9 digits of a 12-digit village code), the keys that may open its villages; the server
//! refuses every other genesis with `PERMISSION_DENIED`. The same keys may read and verify
//! their townships' villages (request tokens), even when a village's stored rows are damaged
//! so early that its own enrolments can no longer be read.
//!
//! The file (`townships` in the data directory, or `--townships FILE`) has one enrolment per
//! line: the 9-digit township code and the key as 64 hex digits (what `jifen keygen` prints as
//! the public key), separated by white space. `#` starts a comment. For example:
//!
//! ```text
//! # 东胜区 某镇 — township authority, key held by the 镇党委 office
//! 150602101 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c
//! ```
//!
//! A later issue moves this list into a township log of its own (DESIGN.md).

use jifen_ledger::body::decode_body;
use jifen_ledger::pb::event_body::Payload;
use jifen_ledger::record::Record;
use jifen_ledger::signature::PublicKey;
use jifen_ledger::VillageCode;
use std::collections::HashMap;
use std::path::Path;
use thiserror::Error;

/// Why a townships file was refused.
#[derive(Debug, Error)]
pub enum TownshipsError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} line {line}: {why}")]
    Line { path: String, line: usize, why: String },
}

/// Why a genesis was refused by the deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenRefusal {
    /// The deployment enrols no key for this township.
    UnknownTownship { township: String },
    /// The key is not one the deployment enrolled for this township.
    KeyNotEnrolled { township: String },
}

/// The township authority keys enrolled by the deployment.
#[derive(Clone, Debug, Default)]
pub struct Townships {
    keys: HashMap<String, Vec<PublicKey>>,
}

/// The township of a village code: its first 9 digits.
pub fn township_of(code: &VillageCode) -> &str {
    &code.as_str()[..9]
}

impl Townships {
    /// No township enrolled: every genesis is refused.
    pub fn none() -> Townships {
        Townships::default()
    }

    /// Enrols `key` for `township` (9 digits).
    pub fn enrol(&mut self, township: &str, key: PublicKey) -> &mut Townships {
        let keys = self.keys.entry(township.to_owned()).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
        self
    }

    /// The keys that signed these genesis records (other records are passed over), each
    /// enrolled for its village's township: the file of a deployment that already holds these
    /// ledgers, and the tests'.
    pub fn of_geneses<'a>(geneses: impl IntoIterator<Item = &'a Record>) -> Townships {
        let mut t = Townships::none();
        for r in geneses {
            let payload = decode_body(r.body()).ok().and_then(|b| b.payload);
            if let Some(Payload::LedgerOpened(p)) = payload {
                if let Some(key) = PublicKey::from_slice(&p.township_key) {
                    t.enrol(township_of(r.ledger_id()), key);
                }
            }
        }
        t
    }

    /// The enrolments as the text of a townships file, in township order.
    pub fn to_file_text(&self) -> String {
        let mut lines: Vec<String> =
            self.keys.iter().flat_map(|(t, keys)| keys.iter().map(move |k| format!("{t} {}\n", jifen_ledger::hex(&k.0)))).collect();
        lines.sort();
        lines.concat()
    }

    /// Reads a townships file.
    pub fn load(path: &Path) -> Result<Townships, TownshipsError> {
        let text = std::fs::read(path).map_err(|source| TownshipsError::Read { path: path.display().to_string(), source })?;
        Townships::parse(&path.display().to_string(), &text)
    }

    /// Parses the text of a townships file named `path` (for messages).
    pub fn parse(path: &str, text: &[u8]) -> Result<Townships, TownshipsError> {
        let text = std::str::from_utf8(text).map_err(|e| TownshipsError::Line {
            path: path.to_owned(),
            line: 0,
            why: format!("not UTF-8 text: {e}"),
        })?;
        let mut out = Townships::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: String| TownshipsError::Line { path: path.to_owned(), line: i + 1, why };
            let mut fields = line.split_whitespace();
            let (Some(code), Some(key), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(bad("expected a 9-digit township code and a 64-hex-digit key".into()));
            };
            if code.len() != 9 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("{code:?} is not a 9-digit township code")));
            }
            let key = parse_hex_key(key).ok_or_else(|| bad(format!("{key:?} is not a public key of 64 hex digits")))?;
            if !key.is_acceptable() {
                return Err(bad("the key is a weak (small-order) Ed25519 key".into()));
            }
            out.enrol(code, key);
        }
        Ok(out)
    }

    /// Whether `key` may open the village `code`.
    pub fn may_open(&self, code: &VillageCode, key: &PublicKey) -> Result<(), OpenRefusal> {
        let township = township_of(code);
        match self.keys.get(township) {
            None => Err(OpenRefusal::UnknownTownship { township: township.to_owned() }),
            Some(keys) if keys.contains(key) => Ok(()),
            Some(_) => Err(OpenRefusal::KeyNotEnrolled { township: township.to_owned() }),
        }
    }

    /// Whether `key` is enrolled for the township of village `code`.
    pub fn is_enrolled_for(&self, code: &VillageCode, key: &PublicKey) -> bool {
        self.may_open(code, key).is_ok()
    }

    /// The number of enrolled keys.
    pub fn len(&self) -> usize {
        self.keys.values().map(Vec::len).sum()
    }

    /// Whether no key is enrolled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A 32-byte public key written as exactly 64 hex digits.
pub fn parse_hex_key(s: &str) -> Option<PublicKey> {
    PublicKey::from_slice(&crate::hex32(s)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

    #[test]
    fn a_file_enrols_keys_per_township() {
        let t = Townships::parse("t", format!("# comment\n\n150602101 {KEY}  # trailing\n").as_bytes()).unwrap();
        let key = parse_hex_key(KEY).unwrap();
        let code = VillageCode::parse("150602101001").unwrap();
        assert_eq!(t.may_open(&code, &key), Ok(()));
        let other = VillageCode::parse("150602102001").unwrap();
        assert_eq!(t.may_open(&other, &key), Err(OpenRefusal::UnknownTownship { township: "150602102".into() }));
        let stranger = PublicKey([7; 32]);
        assert_eq!(t.may_open(&code, &stranger), Err(OpenRefusal::KeyNotEnrolled { township: "150602101".into() }));
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, line) in [
            (format!("15060210 {KEY}"), 1),
            (format!("\n150602101 {}", &KEY[..63]), 2),
            (format!("150602101 {KEY} extra"), 1),
            ("150602101 é".to_owned() + &KEY[2..], 1),
            (format!("150602101 {}", "0".repeat(64)), 1),
        ] {
            match Townships::parse("f", text.as_bytes()) {
                Err(TownshipsError::Line { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(Townships::parse("f", b"\xff").is_err());
    }
}
