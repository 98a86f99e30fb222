//! Signed notes and checkpoints under attack: every field mangled, every signature bit
//! flipped, unknown and forged keys, and strict parsing.

use jifen_ledger::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use jifen_ledger::hash::Hash;
use jifen_ledger::note::{key_id, Note, NoteError, NoteSigner, NoteVerifier};
use jifen_ledger::sample::ActorKey;

const ORIGIN: &str = "jifen.example.cn/village/150602101201";

fn signers() -> (NoteSigner, NoteSigner, NoteSigner) {
    (
        NoteSigner::new(ORIGIN, ActorKey::derive(9, "log", None).key).unwrap(),
        NoteSigner::new("jifen.example.cn/witness/s1", ActorKey::derive(9, "s1", None).key).unwrap(),
        NoteSigner::new("jifen.example.cn/witness/s2", ActorKey::derive(9, "s2", None).key).unwrap(),
    )
}

fn checkpoint() -> Checkpoint {
    Checkpoint { origin: ORIGIN.into(), size: 1234, root: Hash::of(b"root") }
}

#[test]
fn a_cosigned_checkpoint_opens_and_names_its_cosigners() {
    let (log, s1, s2) = signers();
    let mut signed = checkpoint().sign(&log);
    signed.cosign(&s1);
    let witnesses = [s1.verifier().clone(), s2.verifier().clone()];
    let (opened, cosigners) = SignedCheckpoint::open(signed.encode().as_bytes(), ORIGIN, log.verifier(), &witnesses).unwrap();
    assert_eq!(opened.checkpoint(), &checkpoint());
    assert_eq!(cosigners, vec![s1.verifier()]);
}

#[test]
fn verifier_keys_round_trip_and_key_ids_follow_the_spec() {
    let (log, _, _) = signers();
    let text = log.verifier().to_string();
    assert_eq!(NoteVerifier::parse(&text).unwrap(), *log.verifier());
    assert_eq!(log.verifier().id(), key_id(ORIGIN, log.verifier().public_key()));
    // A verifier key whose key ID does not match its key is refused.
    let parts: Vec<&str> = text.split('+').collect();
    let wrong = format!("{}+{:08x}+{}", parts[0], log.verifier().id() ^ 1, parts[2]);
    assert!(NoteVerifier::parse(&wrong).is_err());
    for bad in ["", "name", "a+b", "a+0000000g+AQ==", "a b+00000000+AQ=="] {
        assert!(NoteVerifier::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn flipping_any_bit_of_the_note_is_rejected() {
    let (log, s1, _) = signers();
    let mut signed = checkpoint().sign(&log);
    signed.cosign(&s1);
    let wire = signed.encode().into_bytes();
    let witnesses = [s1.verifier().clone()];
    for i in 0..wire.len() {
        for bit in 0..8 {
            let mut bad = wire.clone();
            bad[i] ^= 1 << bit;
            let opened = SignedCheckpoint::open(&bad, ORIGIN, log.verifier(), &witnesses);
            // Either refused, or (a flip inside an unknown-key name would make it unknown, so
            // ignored) still carrying exactly the original checkpoint with fewer cosigners.
            if let Ok((c, cos)) = opened {
                assert_eq!(c.checkpoint(), &checkpoint(), "byte {i} bit {bit} changed the checkpoint yet opened");
                assert!(cos.is_empty(), "byte {i} bit {bit}");
            }
        }
    }
}

#[test]
fn forged_unknown_and_missing_signatures() {
    let (log, s1, _) = signers();
    let witnesses = [s1.verifier().clone()];
    // Signed only by a witness: the log signature is required.
    let mut note = Note::new(checkpoint().to_text()).unwrap();
    note.sign(&s1);
    assert_eq!(
        SignedCheckpoint::open(note.encode().as_bytes(), ORIGIN, log.verifier(), &witnesses).unwrap_err(),
        CheckpointError::NotSignedByLog(ORIGIN.into())
    );
    // A forger with the log's name but another key: same name, different key ID: ignored.
    let forger = NoteSigner::new(ORIGIN, ActorKey::derive(9, "forger", None).key).unwrap();
    let forged = checkpoint().sign(&forger);
    assert_eq!(
        SignedCheckpoint::open(forged.encode().as_bytes(), ORIGIN, log.verifier(), &witnesses).unwrap_err(),
        CheckpointError::Note(NoteError::NoKnownSignature)
    );
    // A known key with a wrong signature rejects the note.
    let good = checkpoint().sign(&log);
    let mut sig = good.note().signatures()[0].clone();
    sig.signature[0] ^= 1;
    let mut n = Note::new(checkpoint().to_text()).unwrap();
    n.add_signature(sig);
    assert!(matches!(
        SignedCheckpoint::open(n.encode().as_bytes(), ORIGIN, log.verifier(), &witnesses),
        Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
    ));
    // Another origin.
    let other = Checkpoint { origin: "jifen.example.cn/village/150602101202".into(), ..checkpoint() }.sign(&log);
    assert!(matches!(
        SignedCheckpoint::open(other.encode().as_bytes(), ORIGIN, log.verifier(), &witnesses),
        Err(CheckpointError::WrongOrigin { .. })
    ));
}

#[test]
fn checkpoint_text_is_parsed_strictly() {
    let root = "cm9vdHJvb3Ryb290cm9vdHJvb3Ryb290cm9vdHJvb3Q=";
    let good = format!("o\n5\n{root}\n");
    assert!(Checkpoint::parse_text(&good).is_ok());
    assert!(Checkpoint::parse_text(&format!("o\n5\n{root}\next\n")).is_ok());
    for (bad, what) in [
        (format!("o\n05\n{root}\n"), "leading zero"),
        (format!("o\n-5\n{root}\n"), "negative"),
        (format!("o\n5\n{root}"), "no final newline"),
        (format!("\n5\n{root}\n"), "empty origin"),
        ("o\n5\nAAAA\n".to_string(), "short root"),
        (format!("o\n5\n{root}\n\n"), "empty extension"),
        (format!("o\n5\n{}\n", &root[..root.len() - 1]), "bad base64"),
        ("o\n5\n".to_string(), "missing root"),
        (format!("o\n18446744073709551616\n{root}\n"), "size overflow"),
    ] {
        assert!(Checkpoint::parse_text(&bad).is_err(), "{what}");
    }
}

#[test]
fn notes_are_parsed_strictly() {
    let (log, _, _) = signers();
    let good = checkpoint().sign(&log).encode();
    assert!(Note::parse(good.as_bytes()).is_ok());
    let no_sep = good.replacen("\n\n", "\n", 1);
    assert!(Note::parse(no_sep.as_bytes()).is_err());
    assert_eq!(Note::parse(format!("{good}\u{1}").as_bytes()).unwrap_err(), NoteError::BadCharacters);
    assert!(Note::parse(good.trim_end().as_bytes()).is_err(), "missing final newline");
    assert!(Note::parse(good.replace("\u{2014} ", "- ").as_bytes()).is_err());
    assert!(Note::parse(&[0xff, b'\n', b'\n']).is_err());
    assert_eq!(Note::parse(&vec![b'a'; (1 << 20) + 1]).unwrap_err(), NoteError::TooLarge);
    assert!(Note::new("no newline".into()).is_err());
    assert!(NoteSigner::new("has space", ActorKey::derive(1, "x", None).key).is_err());
    assert!(NoteSigner::new("has+plus", ActorKey::derive(1, "x", None).key).is_err());
}
