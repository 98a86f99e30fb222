//! The properties the fuzz targets (`ledger/fuzz/`) check on arbitrary input, shared with the
//! test that replays the kept corpus (`ledger/tests/parsers.rs`). Each function takes any bytes
//! and panics only if a parser breaks its contract:
//!
//! - it returns a value or an error, never panics;
//! - what decodes from a canonical format re-encodes to exactly the input bytes;
//! - what parses can be checked further (signatures, proofs, replay) without panicking.

use crate::body::{decode_body, encode_body};
use crate::bundle::{verify_bundle, Bundle, Trust};
use crate::checkpoint::Checkpoint;
use crate::note::{Note, NoteSigner, NoteVerifier};
use crate::record::Record;
use crate::signature::BatchSeed;
use crate::token::RequestToken;
use crate::verify::SignatureMode;
use crate::witness::Evidence;

/// Event bodies and records: canonical, so decoding then encoding gives the input back.
pub fn body(data: &[u8]) {
    if let Ok(b) = decode_body(data) {
        assert_eq!(encode_body(&b), data, "a body decodes only from its canonical bytes");
    }
    if let Ok(r) = Record::decode(data) {
        assert_eq!(r.encode(), data, "a record decodes only from its canonical bytes");
        let _ = r.hash();
    }
}

/// Signed notes, checkpoint texts and verifier keys.
pub fn note(data: &[u8]) {
    if let Ok(n) = Note::parse(data) {
        let _ = Checkpoint::parse_text(n.text());
        let names: Vec<String> = n.signatures().iter().map(|s| s.name.clone()).collect();
        // Re-encoding the parsed note gives a note that parses to the same text and lines.
        let again = Note::parse(n.encode().as_bytes()).expect("an encoded note parses");
        assert_eq!(again.text(), n.text());
        assert_eq!(again.signatures().iter().map(|s| s.name.clone()).collect::<Vec<_>>(), names);
        let signer = NoteSigner::new("jifen.example.cn/village/150602101201", ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
        let known = [signer.expect("a valid key name").verifier().clone()];
        let _ = n.verify(&known);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Checkpoint::parse_text(text);
        let _ = NoteVerifier::parse(text);
    }
}

/// Year bundles, twice: as given (the checksum stops almost everything), and sealed with a
/// correct checksum so the section parsers and the verifier see the input.
pub fn bundle(data: &[u8]) {
    for bytes in [data.to_vec(), Bundle::seal(data.to_vec())] {
        if let Ok(b) = Bundle::decode(&bytes) {
            assert_eq!(b.encode(), bytes, "a bundle decodes only from its canonical bytes");
            if b.records.len() <= 64 {
                let _ = verify_bundle(&b, &Trust { log_key: None, witness_keys: vec![] }, SignatureMode::Batch(BatchSeed([0; 32])), |_| {});
            }
        }
    }
}

/// Request tokens: what parses is bound to one method, ledger, time and nonce.
pub fn token(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = RequestToken::parse(text) {
            let _ = t.check(&t.method.clone(), &t.ledger.clone(), t.issued_at);
        }
    }
}

/// Split-view evidence files: parsed, re-encoded identically, and verified.
pub fn evidence(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(e) = Evidence::parse(text) {
            assert_eq!(e.encode(), text, "evidence parses only from its canonical text");
            let _ = e.verify();
        }
    }
}
