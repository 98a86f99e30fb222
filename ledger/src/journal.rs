//! Collections with an undo journal, for deciding a batch of events on the live state.
//!
//! A writer that appends several events in one request decides and applies each on the state
//! (each sees the ones before it), then stores them. If one is refused, or the store fails, the
//! state must be as it was. Cloning the state costs what its history costs, and reloading it
//! costs more. Instead, while a journal is open (`begin`), every change records the value it
//! replaced, and `rollback` puts those back in reverse order. With no journal open (replay,
//! verification), a change costs one branch more than the plain collection.
//!
//! `JMap` wraps a `HashMap`, `JOrd` a `BTreeMap` and `JSet` a `HashSet`; each offers the
//! methods the write-model uses. Reads go through `Deref` to the plain collection.
//!
//! The hash tables hash with foldhash (seeded per process, as hashbrown's default), not
//! SipHash: the keys are short ids and digests, hashed on every event a replay folds, and
//! SipHash was a tenth of the fold. Nothing depends on their order: a snapshot sorts.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::ops::Deref;

/// The hasher of the journaled hash tables (module docs).
pub type FastHasher = foldhash::fast::RandomState;
/// A `HashMap` with the [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, FastHasher>;
/// A `HashSet` with the [`FastHasher`].
pub type FastSet<K> = HashSet<K, FastHasher>;

/// The journal of one collection: each change's key and the value it replaced.
type Undo<K, V> = Option<Vec<(K, Option<V>)>>;

macro_rules! journaled_map {
    ($name:ident, $inner:ident, [$($bound:tt)+]) => {
        /// A map with an undo journal (module docs).
        #[derive(Clone, Debug)]
        pub struct $name<K, V> {
            map: $inner<K, V>,
            undo: Undo<K, V>,
        }

        impl<K, V> Default for $name<K, V> {
            fn default() -> Self {
                $name { map: $inner::default(), undo: None }
            }
        }

        impl<K, V> Deref for $name<K, V> {
            type Target = $inner<K, V>;
            fn deref(&self) -> &$inner<K, V> {
                &self.map
            }
        }

        impl<K: $($bound)+ + Clone, V: Clone> $name<K, V> {
            /// Opens the journal: changes from now on can be rolled back.
            pub fn begin(&mut self) {
                self.undo = Some(Vec::new());
            }
            /// Closes the journal, keeping the changes.
            pub fn commit(&mut self) {
                self.undo = None;
            }
            /// Undoes every change since `begin` and closes the journal.
            pub fn rollback(&mut self) {
                if let Some(undo) = self.undo.take() {
                    for (key, old) in undo.into_iter().rev() {
                        match old {
                            Some(v) => self.map.insert(key, v),
                            None => self.map.remove(&key),
                        };
                    }
                }
            }
            /// The keys changed since `begin` (a key may be named more than once), in the
            /// order of their first change; none without an open journal.
            pub fn touched(&self) -> impl Iterator<Item = &K> {
                self.undo.iter().flatten().map(|(k, _)| k)
            }
            /// The value `key` had when the journal was opened (`Some(None)`: it had none), if
            /// it changed since.
            pub fn before(&self, key: &K) -> Option<Option<&V>>
            where
                K: PartialEq,
            {
                self.undo.iter().flatten().find(|(k, _)| k == key).map(|(_, old)| old.as_ref())
            }
            fn note(&mut self, key: &K) {
                if let Some(undo) = &mut self.undo {
                    undo.push((key.clone(), self.map.get(key).cloned()));
                }
            }
            /// Inserts, returning the value replaced.
            pub fn insert(&mut self, key: K, value: V) -> Option<V> {
                self.note(&key);
                self.map.insert(key, value)
            }
            /// The value of `key`, to change.
            pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
            where
                K: Borrow<Q>,
                Q: $($bound)+ + ?Sized,
            {
                if self.undo.is_some() {
                    let owned = self.map.get_key_value(key).map(|(k, _)| k.clone());
                    if let Some(k) = owned {
                        self.note(&k);
                    }
                }
                self.map.get_mut(key)
            }
            /// The value of `key`, inserted as `V::default()` if absent, to change.
            pub fn entry_or_default(&mut self, key: K) -> &mut V
            where
                V: Default,
            {
                self.note(&key);
                self.map.entry(key).or_default()
            }
            /// Removes `key`, returning its value.
            pub fn remove(&mut self, key: &K) -> Option<V> {
                self.note(key);
                self.map.remove(key)
            }
            /// Replaces every value by `f` of it (a journal records each).
            pub fn update_all(&mut self, mut f: impl FnMut(&K, &mut V)) {
                if let Some(undo) = &mut self.undo {
                    undo.extend(self.map.iter().map(|(k, v)| (k.clone(), Some(v.clone()))));
                }
                for (k, v) in self.map.iter_mut() {
                    f(k, v);
                }
            }
        }

        impl<K: $($bound)+, V> FromIterator<(K, V)> for $name<K, V> {
            fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
                $name { map: iter.into_iter().collect(), undo: None }
            }
        }
    };
}

journaled_map!(JMap, FastMap, [Hash + Eq]);
journaled_map!(JOrd, BTreeMap, [Ord]);

impl<K, V: PartialEq> PartialEq for JOrd<K, V>
where
    K: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}
impl<K: Eq, V: Eq> Eq for JOrd<K, V> {}

/// A set with an undo journal (module docs).
#[derive(Clone, Debug)]
pub struct JSet<K> {
    set: FastSet<K>,
    undo: Option<Vec<K>>,
}

impl<K> Default for JSet<K> {
    fn default() -> Self {
        JSet { set: FastSet::default(), undo: None }
    }
}

impl<K> Deref for JSet<K> {
    type Target = FastSet<K>;
    fn deref(&self) -> &FastSet<K> {
        &self.set
    }
}

impl<K: Hash + Eq + Clone> JSet<K> {
    /// Opens the journal.
    pub fn begin(&mut self) {
        self.undo = Some(Vec::new());
    }
    /// Closes the journal, keeping the changes.
    pub fn commit(&mut self) {
        self.undo = None;
    }
    /// Removes what was inserted since `begin` and closes the journal.
    pub fn rollback(&mut self) {
        if let Some(undo) = self.undo.take() {
            for k in undo {
                self.set.remove(&k);
            }
        }
    }
    /// Inserts `key`; true if it was not there.
    pub fn insert(&mut self, key: K) -> bool {
        let new = self.set.insert(key.clone());
        if new {
            if let Some(undo) = &mut self.undo {
                undo.push(key);
            }
        }
        new
    }
}

impl<K: Hash + Eq + Clone> Extend<K> for JSet<K> {
    fn extend<I: IntoIterator<Item = K>>(&mut self, iter: I) {
        for k in iter {
            self.insert(k);
        }
    }
}

/// A map from 16-byte digests to small fixed-size values that a ledger only ever adds to
/// (idempotency keys, what settled periods leave), kept compact: the recent insertions in a
/// journaled hash map, the older ones in one vector sorted by key (40 bytes an idempotency key
/// instead of about 90 in a hash table). [`JDigests::compact`] moves the recent ones over
/// when there are enough of them (an eighth of the older ones, so each entry is moved a
/// bounded number of times), and only with no journal open: what a rollback may undo is
/// always in the hash map.
#[derive(Clone, Debug)]
pub struct JDigests<V> {
    recent: JMap<[u8; 16], V>,
    sorted: Vec<([u8; 16], V)>,
    /// Where each bucket of keys (by their first `bits` bits) starts in `sorted`, and where
    /// the last one ends: a lookup searches about eight entries, not the whole vector (the
    /// keys are digests, evenly spread).
    starts: Vec<u32>,
    bits: u32,
}

impl<V> Default for JDigests<V> {
    fn default() -> Self {
        JDigests { recent: JMap::default(), sorted: Vec::new(), starts: vec![0, 0], bits: 0 }
    }
}

/// The bucket of a key among `2^bits`.
fn bucket(key: &[u8; 16], bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (u32::from_be_bytes([key[0], key[1], key[2], key[3]]) >> (32 - bits)) as usize
    }
}

/// Recent entries below this many are never compacted.
const MIN_RECENT: usize = 4096;

impl<V: Copy> JDigests<V> {
    /// Opens the journal.
    pub fn begin(&mut self) {
        self.recent.begin();
    }
    /// Closes the journal, keeping the changes (and compacts).
    pub fn commit(&mut self) {
        self.recent.commit();
        self.compact();
    }
    /// Removes what was inserted since `begin` and closes the journal.
    pub fn rollback(&mut self) {
        self.recent.rollback();
    }
    /// The value of `key`.
    pub fn get(&self, key: &[u8; 16]) -> Option<&V> {
        self.recent.get(key).or_else(|| self.find(key).map(|i| &self.sorted[i].1))
    }
    /// The position of `key` in the sorted vector.
    fn find(&self, key: &[u8; 16]) -> Option<usize> {
        let b = bucket(key, self.bits);
        let (from, to) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        self.sorted[from..to].binary_search_by(|(k, _)| k.cmp(key)).ok().map(|i| from + i)
    }
    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &[u8; 16]) -> bool {
        self.get(key).is_some()
    }
    /// The number of entries.
    pub fn len(&self) -> usize {
        self.recent.len() + self.sorted.len()
    }
    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Inserts (a key inserted again keeps its latest value).
    pub fn insert(&mut self, key: [u8; 16], value: V) {
        self.recent.insert(key, value);
    }
    /// Moves the recent entries into the sorted vector if there are enough of them and no
    /// journal is open: one merge from the back, in place.
    pub fn compact(&mut self) {
        if self.recent.undo.is_some() || self.recent.len() < MIN_RECENT.max(self.sorted.len() / 8) {
            return;
        }
        let mut new: Vec<([u8; 16], V)> = std::mem::take(&mut self.recent).map.into_iter().collect();
        new.sort_unstable_by_key(|e| e.0);
        // A key already in the sorted vector takes its recent value there.
        new.retain(|(k, v)| match self.find(k) {
            Some(i) => {
                self.sorted[i].1 = *v;
                false
            }
            None => true,
        });
        let (n, m) = (self.sorted.len(), new.len());
        let Some(&filler) = new.first() else { return };
        self.sorted.reserve_exact(m);
        self.sorted.resize(n + m, filler);
        let (mut i, mut j) = (n, m);
        while j > 0 {
            let k = i + j - 1;
            if i > 0 && self.sorted[i - 1].0 > new[j - 1].0 {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = new[j - 1];
                j -= 1;
            }
        }
        self.index();
    }

    /// Builds the bucket index of the sorted vector: about eight keys a bucket.
    fn index(&mut self) {
        let n = self.sorted.len();
        self.bits = (usize::BITS - (n / 8).leading_zeros()).min(24);
        self.starts = vec![0; (1 << self.bits) + 1];
        for (key, _) in &self.sorted {
            self.starts[bucket(key, self.bits) + 1] += 1;
        }
        for b in 1..self.starts.len() {
            self.starts[b] += self.starts[b - 1];
        }
    }
}

/// The serialised form of the journaled collections (a village's sealed snapshot): their
/// entries in key order, so that the same contents always give the same bytes, whatever the
/// hash tables' order or when the digests were last compacted. A collection with an open
/// journal is not serialised: a snapshot is taken between requests.
mod serial {
    use super::*;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    fn closed<E: serde::ser::Error>(open: bool) -> Result<(), E> {
        if open {
            Err(E::custom("a journal is open"))
        } else {
            Ok(())
        }
    }

    impl<K: Serialize + Ord, V: Serialize> Serialize for JMap<K, V> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            closed(self.undo.is_some())?;
            let mut entries: Vec<(&K, &V)> = self.map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            s.collect_seq(entries)
        }
    }
    impl<'de, K: Deserialize<'de> + Hash + Eq, V: Deserialize<'de>> Deserialize<'de> for JMap<K, V> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let entries: Vec<(K, V)> = Vec::deserialize(d)?;
            let n = entries.len();
            let map: Self = entries.into_iter().collect();
            if map.len() != n {
                return Err(D::Error::custom("a key is given twice"));
            }
            Ok(map)
        }
    }

    impl<K: Serialize, V: Serialize> Serialize for JOrd<K, V> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            closed(self.undo.is_some())?;
            s.collect_seq(self.map.iter())
        }
    }
    impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for JOrd<K, V> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let entries: Vec<(K, V)> = Vec::deserialize(d)?;
            if !entries.windows(2).all(|w| w[0].0 < w[1].0) {
                return Err(D::Error::custom("keys out of order"));
            }
            Ok(entries.into_iter().collect())
        }
    }

    impl<K: Serialize + Ord> Serialize for JSet<K> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            closed(self.undo.is_some())?;
            let mut keys: Vec<&K> = self.set.iter().collect();
            keys.sort_unstable();
            s.collect_seq(keys)
        }
    }
    impl<'de, K: Deserialize<'de> + Hash + Eq> Deserialize<'de> for JSet<K> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let keys: Vec<K> = Vec::deserialize(d)?;
            let n = keys.len();
            let set: FastSet<K> = keys.into_iter().collect();
            if set.len() != n {
                return Err(D::Error::custom("a key is given twice"));
            }
            Ok(JSet { set, undo: None })
        }
    }

    impl<V: Serialize + Copy> Serialize for JDigests<V> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            closed(self.recent.undo.is_some())?;
            let mut recent: Vec<([u8; 16], V)> = self.recent.map.iter().map(|(k, v)| (*k, *v)).collect();
            recent.sort_unstable_by_key(|e| e.0);
            // One sequence in key order: the two parts merged (a key is in one of them).
            let (mut a, mut b) = (self.sorted.iter().peekable(), recent.iter().peekable());
            let merged = std::iter::from_fn(|| match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 < y.0 => a.next(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, None) => None,
            });
            let mut all: Vec<&([u8; 16], V)> = Vec::with_capacity(self.len());
            all.extend(merged);
            s.collect_seq(all)
        }
    }
    impl<'de, V: Deserialize<'de> + Copy> Deserialize<'de> for JDigests<V> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let sorted: Vec<([u8; 16], V)> = Vec::deserialize(d)?;
            if !sorted.windows(2).all(|w| w[0].0 < w[1].0) {
                return Err(D::Error::custom("digests out of order"));
            }
            let mut digests = JDigests { sorted, ..JDigests::default() };
            digests.index();
            Ok(digests)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_restores_every_change_since_begin_and_a_commit_keeps_them() {
        let mut m: JMap<String, i64> = [("a".to_owned(), 1), ("b".to_owned(), 2)].into_iter().collect();
        let mut o: JOrd<u32, Vec<u8>> = [(1, vec![1])].into_iter().collect();
        let mut s: JSet<u8> = JSet::default();
        s.insert(7);
        let (m0, o0, s0) = (m.clone(), o.clone(), s.clone());
        m.begin();
        o.begin();
        s.begin();
        m.insert("c".into(), 3);
        *m.get_mut("a").unwrap() += 10;
        *m.get_mut("a").unwrap() += 10;
        *m.entry_or_default("d".into()) -= 4;
        m.remove(&"b".to_owned());
        m.update_all(|_, v| *v *= 2);
        o.entry_or_default(2).push(2);
        o.get_mut(&1).unwrap().push(9);
        s.insert(7);
        s.insert(8);
        m.rollback();
        o.rollback();
        s.rollback();
        assert_eq!(*m, *m0);
        assert_eq!(o, o0);
        assert_eq!(*s, *s0);
        m.begin();
        m.insert("z".into(), 26);
        m.commit();
        m.rollback();
        assert_eq!(m.get("z"), Some(&26), "a committed change stays");
    }

    #[test]
    fn compacted_digests_answer_like_a_map_and_a_rollback_never_touches_the_sorted_part() {
        let key = |i: u32| {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
            k[4..8].copy_from_slice(&i.to_be_bytes());
            k
        };
        let mut d: JDigests<u32> = JDigests::default();
        let mut plain = HashMap::new();
        for i in 0..50_000u32 {
            d.insert(key(i), i);
            plain.insert(key(i), i);
            if i % 1000 == 999 {
                // A batch that is undone leaves nothing, even across a compaction's threshold.
                d.begin();
                for j in 0..5000 {
                    d.insert(key(1_000_000 + j), j);
                }
                d.compact();
                d.rollback();
                d.begin();
                d.insert(key(i), i);
                d.commit();
            }
            if i % 7 == 0 {
                d.compact();
            }
        }
        assert!(d.sorted.len() > 40_000 && d.sorted.windows(2).all(|w| w[0].0 < w[1].0), "compacted, in order");
        assert_eq!(d.len(), plain.len());
        for (k, v) in &plain {
            assert_eq!(d.get(k), Some(v));
        }
        assert!((0..5000).all(|j| d.get(&key(1_000_000 + j)).is_none()));
    }
}
