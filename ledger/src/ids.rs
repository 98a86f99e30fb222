//! Validated identifiers, built once at the edge: the village code and pseudonymous ids.

use crate::journal::FastSet;
use std::fmt;
use std::sync::Arc;
use thiserror::Error;

/// An id many events repeat (a household's, an item's, a member's), shared: the write-model
/// keeps each one once ([`Interner`]), and an entry or a cap that names it holds this handle,
/// so cloning it copies no string. It serialises as the string it is.
pub type Id = Arc<str>;

/// The ids the write-model has seen, each kept once (module docs of [`Id`]). A cache, not part
/// of the state's meaning: never serialised, so a state opened from a snapshot starts with it
/// empty. Nothing may depend on what it holds: a lookup it misses is made with the string (an
/// id it keeps after a batch was rolled back, or one it lacks after a snapshot, changes no
/// decision; `tests/write_model.rs` checks caps across a snapshot).
#[derive(Clone, Debug, Default)]
pub struct Interner(FastSet<Id>);

impl Interner {
    /// The shared id equal to `s`, if it was seen.
    pub fn get(&self, s: &str) -> Option<&Id> {
        self.0.get(s)
    }
    /// The shared id equal to `s`, kept from now on if it is new.
    pub fn intern(&mut self, s: &str) -> Id {
        if let Some(id) = self.0.get(s) {
            return id.clone();
        }
        let id: Id = Arc::from(s);
        self.0.insert(id.clone());
        id
    }
}

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("village code must be exactly 12 ASCII digits, got {0:?}")]
    VillageCode(String),
    #[error("{field} must be 1 to {max} characters of [A-Za-z0-9._:-], got {value:?}")]
    Id { field: &'static str, max: usize, value: String },
}

/// A village's 12-digit statistical area code (统计用区划代码): the ledger id.
#[derive(serde::Serialize, serde::Deserialize, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VillageCode(String);

impl VillageCode {
    /// Parses a code of exactly 12 ASCII digits.
    pub fn parse(s: &str) -> Result<VillageCode, IdError> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(VillageCode(s.to_owned()))
        } else {
            Err(IdError::VillageCode(s.to_owned()))
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VillageCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for VillageCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VillageCode({})", self.0)
    }
}

/// The longest identifier the ledger accepts.
pub const MAX_ID_LEN: usize = 64;

/// Checks that `value` is a pseudonymous identifier: 1–64 characters of `[A-Za-z0-9._:-]`.
///
/// Ids are deliberately restricted to ASCII so that no name (a Chinese name, a phone number
/// with spaces) fits in one by accident; see DESIGN.md "Personal data".
pub fn check_id(field: &'static str, value: &str) -> Result<(), IdError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(IdError::Id { field, max: MAX_ID_LEN, value: value.to_owned() })
    }
}
