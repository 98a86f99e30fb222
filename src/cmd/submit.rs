//! `jifen submit`: sign an event described in JSON or YAML (the proto3 JSON mapping of
//! `jifen.v1.EventBody`) with key files, and append it.
//!
//! The description needs only the payload, e.g.
//! `{"scoreRecorded": {"entryId": "E1", "householdId": "H0001", "itemCode": "B01",
//! "rulebookVersion": 1, "points": 3, "occurredOn": "2025-03-02", "source": "SCORE_SOURCE_INSPECTION"}}`.
//! The ledger, author, time and idempotency key are filled in unless given. The key is derived
//! from the description, so submitting the same description again records nothing new. The
//! body is then encoded canonically, signed, and appended. A rejection prints the rule it broke.

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;
use jifen::api::{self, ledger_service_client::LedgerServiceClient};
use jifen_ledger::body::encode_body;
use jifen_ledger::pb::EventBody;
use jifen_ledger::signature::sign_event;
use prost::Message;
use std::path::{Path, PathBuf};
use tonic_types::StatusExt;

#[derive(clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    server: super::connect::ServerArgs,
    /// The village (12-digit code), unless the description names its ledgerId.
    #[arg(long)]
    village: Option<String>,
    /// The author's actor id, unless the description names its actorId.
    #[arg(long)]
    actor: Option<String>,
    /// The author's key file (from `jifen keygen`).
    #[arg(long)]
    key: PathBuf,
    /// Co-signers' key files (a panel quorum, a supervisor's co-signature).
    #[arg(long)]
    cosign: Vec<PathBuf>,
    /// The event description, JSON or YAML (by extension `.yaml`/`.yml`, or content not
    /// starting with `{`); `-` reads standard input.
    event: PathBuf,
}

/// Reads a key file: 64 hex digits of the Ed25519 seed.
pub fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    let text = text.trim();
    let seed = jifen::hex32(text).with_context(|| format!("{}: a key file holds 64 hex digits (see `jifen keygen`)", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Parses a JSON event description into an EventBody (proto3 JSON mapping, strict).
pub fn parse_event(json: &str) -> anyhow::Result<EventBody> {
    let pool = prost_reflect::DescriptorPool::decode(jifen::api::FILE_DESCRIPTOR_SET).context("descriptor set")?;
    let desc = pool.get_message_by_name("jifen.v1.EventBody").context("EventBody in the descriptor set")?;
    let mut de = serde_json::Deserializer::from_str(json);
    let dynamic =
        prost_reflect::DynamicMessage::deserialize(desc, &mut de).context("the event description is not a jifen.v1.EventBody in JSON")?;
    de.end().context("trailing characters after the event description")?;
    Ok(EventBody::decode(dynamic.encode_to_vec().as_slice())?)
}

/// Converts a YAML description to JSON (then parsed by the same strict proto3 JSON rules).
pub fn yaml_to_json(yaml: &str) -> anyhow::Result<String> {
    let value: serde_json::Value = serde_norway::from_str(yaml).context("the event description is not valid YAML")?;
    Ok(serde_json::to_string(&value)?)
}

pub fn run(args: SubmitArgs) -> anyhow::Result<()> {
    let json = if args.event.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&args.event).with_context(|| format!("reading {}", args.event.display()))?
    };
    let is_yaml = args.event.extension().is_some_and(|e| e == "yaml" || e == "yml") || !json.trim_start().starts_with('{');
    let json = if is_yaml { yaml_to_json(&json)? } else { json };
    let mut body = parse_event(&json)?;
    if body.payload.is_none() {
        bail!("the event description has no payload (e.g. \"scoreRecorded\": {{ … }})");
    }
    if body.ledger_id.is_empty() {
        body.ledger_id = args.village.clone().context("--village (or ledgerId in the description) is required")?;
    }
    if body.actor_id.is_empty() {
        body.actor_id = args.actor.clone().context("--actor (or actorId in the description) is required")?;
    }
    if body.occurred_at == 0 {
        body.occurred_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros() as i64;
    }
    let derived_key = body.idempotency_key.is_empty();
    if derived_key {
        // The same description submitted twice is the same event: derive the key from it.
        body.idempotency_key = format!("submit-{}", jifen_ledger::Hash::of(json.as_bytes()).to_hex().get(..24).unwrap_or_default());
    }
    let bytes = encode_body(&body);
    let mut keys = vec![read_key(&args.key)?];
    for c in &args.cosign {
        keys.push(read_key(c)?);
    }
    let signatures = keys
        .iter()
        .map(|k| {
            let s = sign_event(k, &bytes);
            api::EventSignature { public_key: s.public_key.0.to_vec(), signature: s.signature.to_vec() }
        })
        .collect();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut client = LedgerServiceClient::new(args.server.channel().await?);
        match client.append(api::AppendRequest { event: Some(api::SignedEvent { body: bytes, signatures }) }).await {
            Ok(r) => {
                let r = r.into_inner().result.context("the server answered without a result")?;
                println!(
                    "{} seq {} record {}{}",
                    if r.duplicate { "already recorded:" } else { "appended:" },
                    r.seq,
                    jifen_ledger::hex(&r.record_hash),
                    if r.duplicate { " (same event submitted before)" } else { "" }
                );
                Ok(())
            }
            Err(status) => {
                let reason = status.get_details_error_info().map(|i| i.reason).unwrap_or_default();
                if derived_key && reason == "IDEMPOTENCY_CONFLICT" {
                    // Our key is a hash of the whole description, so this description was
                    // recorded before (with the occurred_at of that first submission).
                    println!("already recorded: this description was submitted before ({})", status.message());
                    return Ok(());
                }
                bail!("refused ({:?} {reason}): {}", status.code(), status.message())
            }
        }
    })
}
