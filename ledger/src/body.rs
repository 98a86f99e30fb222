//! Strict decoding of event bodies.
//!
//! A body is accepted only in canonical protobuf encoding: decoding it and encoding the result
//! again must give the same bytes. This rejects unknown fields, fields out of order, repeated
//! scalar fields, non-minimal varints and explicitly encoded default values, so every accepted
//! event has exactly one byte string and nothing unsigned or unread can ride along.

use crate::pb::EventBody;
use crate::record::MAX_BODY_LEN;
use prost::Message;
use thiserror::Error;

/// Why body bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BodyError {
    #[error("body is {0} bytes, more than the limit of {MAX_BODY_LEN}")]
    TooLarge(usize),
    #[error("body is not a valid EventBody protobuf: {0}")]
    Malformed(String),
    #[error("body is not in canonical protobuf encoding (unknown fields, field order, or non-minimal encoding)")]
    NotCanonical,
    #[error("body carries no event payload")]
    NoPayload,
}

/// Decodes a body, requiring canonical encoding and a payload.
pub fn decode_body(bytes: &[u8]) -> Result<EventBody, BodyError> {
    if bytes.len() > MAX_BODY_LEN {
        return Err(BodyError::TooLarge(bytes.len()));
    }
    let body = EventBody::decode(bytes).map_err(|e| BodyError::Malformed(e.to_string()))?;
    if body.encoded_len() != bytes.len() || body.encode_to_vec() != bytes {
        return Err(BodyError::NotCanonical);
    }
    if body.payload.is_none() {
        return Err(BodyError::NoPayload);
    }
    Ok(body)
}

/// Encodes a body: the one encoder clients use before signing.
pub fn encode_body(body: &EventBody) -> Vec<u8> {
    body.encode_to_vec()
}

/// The name of an event's payload type, as in the schema (e.g. "ScoreRecorded").
pub fn event_kind(payload: &crate::pb::event_body::Payload) -> &'static str {
    use crate::pb::event_body::Payload::*;
    match payload {
        LedgerOpened(_) => "LedgerOpened",
        ActorEnrolled(_) => "ActorEnrolled",
        ActorKeyRotated(_) => "ActorKeyRotated",
        ActorRevoked(_) => "ActorRevoked",
        ActorHouseholdChanged(_) => "ActorHouseholdChanged",
        RulebookAdopted(_) => "RulebookAdopted",
        HouseholdRegistered(_) => "HouseholdRegistered",
        MemberAdded(_) => "MemberAdded",
        MemberRemoved(_) => "MemberRemoved",
        HouseholdSplit(_) => "HouseholdSplit",
        HouseholdMerged(_) => "HouseholdMerged",
        HouseholdClosed(_) => "HouseholdClosed",
        PointsClaimed(_) => "PointsClaimed",
        ScoreRecorded(_) => "ScoreRecorded",
        ScoreCorrected(_) => "ScoreCorrected",
        ClaimDeclined(_) => "ClaimDeclined",
        PublicationOpened(_) => "PublicationOpened",
        ObjectionFiled(_) => "ObjectionFiled",
        ObjectionDecided(_) => "ObjectionDecided",
        PublicationClosed(_) => "PublicationClosed",
        PeriodSettled(_) => "PeriodSettled",
        StockReceived(_) => "StockReceived",
        PricesSet(_) => "PricesSet",
        RedemptionRecorded(_) => "RedemptionRecorded",
        RedemptionReversed(_) => "RedemptionReversed",
        HonourAwarded(_) => "HonourAwarded",
        InspectionRecorded(_) => "InspectionRecorded",
        SatisfactionSurveyRecorded(_) => "SatisfactionSurveyRecorded",
    }
}
