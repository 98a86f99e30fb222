//! `esrs::store::EventStore` for the village aggregate over our own schema.
//!
//! esrs names aggregates by `Uuid` and numbers their events from 1 with an `i32`. A village's
//! aggregate id is its 12-digit code read as a 128-bit number ([`aggregate_id`]), and esrs's
//! sequence number is our seq + 1. `persist` appends all the events of a command in one
//! transaction. `delete` is refused: nothing deletes a record.

use super::read_model::Derived;
use super::{Store, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use esrs::store::{EventStore, EventStoreLockGuard, StoreEvent, UnlockOnDrop};
use esrs::AggregateState;
use jifen_ledger::ids::VillageCode;
use jifen_ledger::village::{Accepted, Village, VillageState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// The esrs aggregate id of a village.
pub fn aggregate_id(village: &VillageCode) -> Uuid {
    Uuid::from_u128(village.as_str().parse::<u128>().expect("a village code is 12 digits"))
}

/// The village of an esrs aggregate id.
pub fn village_of(id: &Uuid) -> Result<VillageCode, StoreError> {
    VillageCode::parse(&format!("{:012}", id.as_u128())).map_err(|e| StoreError::Corrupt {
        ledger: id.to_string(),
        seq: -1,
        error: format!("not a village aggregate id: {e}"),
    })
}

/// The village event store.
#[derive(Clone)]
pub struct VillageEventStore {
    store: Store,
    locks: Arc<Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>>,
}

struct Held(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);
impl UnlockOnDrop for Held {}

impl VillageEventStore {
    /// The event store over `store`.
    pub fn new(store: Store) -> VillageEventStore {
        VillageEventStore { store, locks: Arc::default() }
    }

    /// The esrs form of an accepted event of aggregate `id`.
    pub fn store_event(id: Uuid, a: Accepted) -> StoreEvent<Accepted> {
        let r = a.record();
        let hash = a.hash();
        StoreEvent {
            id: Uuid::from_bytes(hash.0[..16].try_into().expect("16 bytes")),
            aggregate_id: id,
            occurred_on: DateTime::<Utc>::from_timestamp_micros(r.recorded_at()).unwrap_or_default(),
            sequence_number: (r.seq() + 1) as i32,
            version: Some(1),
            payload: a,
        }
    }
}

#[async_trait]
impl EventStore for VillageEventStore {
    type Aggregate = Village;
    type Error = StoreError;

    async fn lock(&self, aggregate_id: Uuid) -> Result<EventStoreLockGuard, StoreError> {
        let lock = self.locks.lock().expect("lock table").entry(aggregate_id).or_default().clone();
        Ok(EventStoreLockGuard::new(Held(lock.lock_owned().await)))
    }

    async fn by_aggregate_id(&self, aggregate_id: Uuid) -> Result<Vec<StoreEvent<Accepted>>, StoreError> {
        let village = village_of(&aggregate_id)?;
        self.store
            .load(&village)
            .await?
            .into_iter()
            .map(|r| {
                let seq = r.seq() as i64;
                let a = Accepted::from_verified_record(r).map_err(|e| StoreError::Corrupt {
                    ledger: village.to_string(),
                    seq,
                    error: e.to_string(),
                })?;
                Ok(Self::store_event(aggregate_id, a))
            })
            .collect()
    }

    async fn persist(
        &self,
        state: &mut AggregateState<VillageState>,
        events: Vec<Accepted>,
    ) -> Result<Vec<StoreEvent<Accepted>>, StoreError> {
        self.persist_with(state, events, None).await
    }

    async fn publish(&self, _store_events: &[StoreEvent<Accepted>]) {}

    async fn delete(&self, aggregate_id: Uuid) -> Result<(), StoreError> {
        Err(StoreError::AppendOnly(format!("refused to delete the events of aggregate {aggregate_id}")))
    }
}

impl VillageEventStore {
    /// [`EventStore::persist`], storing what the events derive (read-model rows, the signed
    /// tip) in the same transaction: the transactional event handler of this store.
    pub async fn persist_with(
        &self,
        state: &mut AggregateState<VillageState>,
        events: Vec<Accepted>,
        derived: Option<Derived>,
    ) -> Result<Vec<StoreEvent<Accepted>>, StoreError> {
        let origin = events.first().and_then(|a| match a.payload() {
            jifen_ledger::pb::event_body::Payload::LedgerOpened(p) => Some(p.origin.clone()),
            _ => None,
        });
        let records: Vec<_> = events.iter().map(|a| a.record().clone()).collect();
        self.store.append_with(origin.as_deref(), &records, derived).await?;
        let id = *state.id();
        Ok(events
            .into_iter()
            .map(|a| {
                state.next_sequence_number();
                Self::store_event(id, a)
            })
            .collect())
    }
}
