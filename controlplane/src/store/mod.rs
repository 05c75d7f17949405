//! The `Store`: the one place shared control-plane state lives.
//!
//! A small etcd-shaped key/value interface (string keys, byte values, a global revision,
//! compare-and-swap, leases, prefix watches) with two backends that pass one contract test
//! suite (`tests/store_contract.rs`): [`EmbeddedStore`] on redb (single node, the default) and
//! [`EtcdStore`] (clusters). Typed records sit on top in [`records`] / [`typed`]; the key
//! layout is in [`keys`] and documented in docs/ARCHITECTURE.md ("Store keyspace").
//!
//! This module must never know about HTTP, tenants' business rules or media: it stores bytes.
//! The trait is object safe (boxed futures) so the app holds an `Arc<dyn Store>`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;

pub mod embedded;
pub mod etcd;
pub mod keys;
pub mod lease;
pub mod nodes;
pub mod records;
pub mod typed;

pub use embedded::EmbeddedStore;
pub use etcd::EtcdStore;

/// A boxed future so `Store` stays object safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A stream of changes under a watched prefix, in revision order.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;

/// A lease id. Keys put with a lease are deleted when the lease expires or is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

/// One stored key with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the last change to this key. Revisions are global and only grow, so
    /// `mod_revision` is what compare-and-swap compares against.
    pub mod_revision: u64,
    pub lease: Option<LeaseId>,
}

/// What a compare-and-swap expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist (create-if-absent).
    Absent,
    /// The key must exist with exactly this `mod_revision` (optimistic update).
    Revision(u64),
}

/// Result of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// Written; the new `mod_revision` of the key.
    Swapped { revision: u64 },
    /// The expectation did not hold; nothing was written. `current` is what is there now.
    Conflict { current: Option<KeyValue> },
}

impl CasOutcome {
    pub fn swapped(&self) -> bool {
        matches!(self, CasOutcome::Swapped { .. })
    }
}

/// One write of a [`Store::transaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnWrite {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
    },
}

/// Which end of a prefix [`Store::list_prefix_limited`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    First,
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    Put,
    Delete,
}

/// One change seen by a watch. `value` is empty for deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: WatchKind,
    pub key: String,
    pub value: Vec<u8>,
    pub revision: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, network, etcd unavailable). Retrying may help.
    #[error("store backend error: {0}")]
    Backend(String),
    /// The lease expired or was revoked (or never existed).
    #[error("lease {0:?} not found")]
    LeaseNotFound(LeaseId),
    /// A stored value could not be decoded: a bug or a foreign writer in our keyspace.
    #[error("corrupt value at {key}: {detail}")]
    Corrupt { key: String, detail: String },
    /// A watch fell too far behind and missed events; re-read and watch again.
    #[error("watch lagged behind and missed events")]
    WatchLagged,
}

/// The shared key/value store. Every method is atomic on its own; multi-key invariants are
/// kept with [`Store::compare_and_swap`] on a single key (e.g. room→node bindings).
pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &str) -> StoreFuture<'_, Option<KeyValue>>;
    /// Keys starting with `prefix`, in key order.
    fn list_prefix(&self, prefix: &str) -> StoreFuture<'_, Vec<KeyValue>>;
    /// Unconditional write; returns the new revision.
    fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> StoreFuture<'_, u64>;
    /// Returns whether the key existed.
    fn delete(&self, key: &str) -> StoreFuture<'_, bool>;
    /// Deletes every key under `prefix`; returns how many.
    fn delete_prefix(&self, prefix: &str) -> StoreFuture<'_, u64>;
    /// Writes `value` only if `expect` holds, atomically.
    fn compare_and_swap(
        &self,
        key: &str,
        expect: Expect,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> StoreFuture<'_, CasOutcome>;
    /// Every write in `then`, atomically, if every `(key, expectation)` in `when` holds;
    /// returns whether it wrote. On etcd this is one transaction and one revision whatever
    /// the number of writes (what the write budget of docs/SCALE.md counts); the embedded
    /// store gives each write its own revision.
    fn transaction(
        &self,
        when: Vec<(String, Expect)>,
        then: Vec<TxnWrite>,
    ) -> StoreFuture<'_, bool>;
    /// At most `limit` keys starting with `prefix`, from its first or its last key, returned
    /// in key order: a read whose size does not grow with what is stored under the prefix.
    fn list_prefix_limited(
        &self,
        prefix: &str,
        limit: usize,
        end: End,
    ) -> StoreFuture<'_, Vec<KeyValue>>;
    /// Deletes the key only if its `mod_revision` is `revision`; returns whether it did.
    fn compare_and_delete(&self, key: &str, revision: u64) -> StoreFuture<'_, bool>;
    /// A new lease living `ttl` (rounded up to whole seconds on etcd, which also enforces a
    /// minimum of about 2 s) unless kept alive.
    fn grant_lease(&self, ttl: Duration) -> StoreFuture<'_, LeaseId>;
    /// Restarts the lease's ttl. `LeaseNotFound` once it has expired or was revoked.
    fn keep_alive(&self, lease: LeaseId) -> StoreFuture<'_, ()>;
    /// Ends the lease now, deleting its keys. Unknown leases are not an error.
    fn revoke_lease(&self, lease: LeaseId) -> StoreFuture<'_, ()>;
    /// Changes under `prefix` from now on (lease expiry shows up as deletes).
    fn watch_prefix(&self, prefix: &str) -> StoreFuture<'_, WatchStream>;
}
