//! Replay as a pipeline: the projections of a whole ledger, folded on three threads.
//!
//! 1. **Decode**: each record's body is decoded (and the record moved along, never copied).
//! 2. **State**: the write-model state folds each event; the views that read it right after
//!    the event (balances, 公示, supermarket) fold it there too, and the audit trail takes
//!    what it needs of the state ([`Witnessed::of`]).
//! 3. **Audit**: the audit trail indexes the acts by actor, household and entry, and frees
//!    the events.
//!
//! The stages pass chunks of [`CHUNK`] events over bounded channels, so at most a few chunks
//! are in flight. The result is the serial fold's ([`Projections::apply`] record by record):
//! each stage sees the events in log order, and only the state stage reads the state.

use crate::audit::{AuditTrail, Witnessed};
use crate::{Projections, Views};
use jifen_ledger::record::Record;
use jifen_ledger::village::{Accepted, Rejection, VillageState};
use std::sync::mpsc::sync_channel;

/// Events per chunk passed between the stages.
pub const CHUNK: usize = 1024;
/// Chunks a stage may run ahead of the next.
const AHEAD: usize = 4;

/// Folds verified records, in log order, into the projections (see the module's notes). A
/// record whose body does not decode ends the replay with its rejection.
pub fn replay<I>(records: I) -> Result<Projections, Rejection>
where
    I: IntoIterator<Item = Record>,
    I::IntoIter: Send,
{
    replay_with(records, |_, _| {})
}

/// [`replay`], showing each event to `before` on the state stage, with the write-model state
/// right before it (what an auditor's replay compares a settlement's digest with).
pub fn replay_with<I>(records: I, mut before: impl FnMut(&Accepted, &VillageState)) -> Result<Projections, Rejection>
where
    I: IntoIterator<Item = Record>,
    I::IntoIter: Send,
{
    let records = records.into_iter();
    std::thread::scope(|s| {
        let (to_state, decoded) = sync_channel::<Result<Vec<Accepted>, Rejection>>(AHEAD);
        let (to_audit, witnessed) = sync_channel::<(Vec<Accepted>, Vec<Witnessed>)>(AHEAD);
        let stage = |name: &str| std::thread::Builder::new().name(format!("replay {name}"));
        // A machine that cannot start a thread cannot replay: as exhausted as out of memory.
        const START: &str = "the replay starts its threads";
        stage("decode")
            .spawn_scoped(s, move || {
                let mut records = records;
                loop {
                    let chunk: Result<Vec<Accepted>, Rejection> =
                        records.by_ref().take(CHUNK).map(Accepted::from_verified_record).collect();
                    let last = chunk.as_ref().map_or(true, |c| c.len() < CHUNK);
                    // The state stage stops at a rejection or hangs up: nothing more to decode.
                    if to_state.send(chunk).is_err() || last {
                        return;
                    }
                }
            })
            .expect(START);
        let audit = stage("audit")
            .spawn_scoped(s, move || {
                let mut audit = AuditTrail::default();
                for (events, acts) in witnessed {
                    // The events are freed here, after the acts took what they name.
                    events.into_iter().zip(acts).for_each(|(a, w)| audit.record(&a, w));
                }
                audit
            })
            .expect(START);
        let mut state = VillageState::new();
        let mut views = Views::default();
        let mut failed = None;
        for chunk in decoded {
            let events = match chunk {
                Ok(events) => events,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let mut acts = Vec::with_capacity(events.len());
            for a in &events {
                before(a, &state);
                state.apply(a);
                views.balances.apply(a, &state);
                views.publicity.apply(a, &state);
                views.supermarket.apply(a, &state);
                acts.push(Witnessed::of(a, &state));
            }
            if to_audit.send((events, acts)).is_err() {
                break;
            }
        }
        drop(to_audit);
        // A panic in a stage is a bug in a fold: it propagates as the serial fold's would.
        views.audit = audit.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        match failed {
            Some(e) => Err(e),
            None => Ok(Projections { state, views }),
        }
    })
}
