//! `EmbeddedStore`: the single-node `Store` on redb, persistent in one data directory.
//!
//! redb gives ACID transactions on one file; on top of it this module adds what etcd has
//! natively: a global revision counter (so compare-and-swap means the same on both backends),
//! leases emulated with wall-clock expiry timestamps (persisted, so a lease that expires while
//! the process is down is swept at the next start) swept by a background task, and watches
//! fed by an in-process broadcast channel (one process owns the file, so that sees every write).
//!
//! Must never be used by two processes on one directory (redb locks the file) and never block
//! the async runtime: every transaction runs on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redb::{Database, DatabaseError, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::{
    CasOutcome, End, Expect, KeyValue, LeaseId, Store, StoreError, StoreFuture, TxnWrite,
    WatchEvent, WatchKind, WatchStream,
};

/// key → [mod_revision u64 BE][lease i64 BE, 0 = none][value bytes]
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// lease id → (expires_at unix ms, ttl ms)
const LEASES: TableDefinition<i64, (u64, u64)> = TableDefinition::new("leases");
/// (lease id, key) → () : the keys attached to each lease
const LEASE_KEYS: TableDefinition<(i64, &str), ()> = TableDefinition::new("lease_keys");
/// "revision" and "next_lease" counters
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
const WATCH_BUFFER: usize = 4096;

pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// Held from the start of a write transaction until its events are sent, so watchers
    /// see events in revision order.
    write_order: Mutex<()>,
    events: broadcast::Sender<WatchEvent>,
}

fn backend<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn encode(revision: u64, lease: Option<LeaseId>, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&revision.to_be_bytes());
    out.extend_from_slice(&lease.map_or(0, |l| l.0).to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn decode(key: &str, raw: &[u8]) -> Result<KeyValue, StoreError> {
    if raw.len() < 16 {
        return Err(StoreError::Corrupt {
            key: key.to_owned(),
            detail: format!("entry of {} bytes is shorter than its header", raw.len()),
        });
    }
    let mut rev = [0u8; 8];
    rev.copy_from_slice(&raw[..8]);
    let mut lease = [0u8; 8];
    lease.copy_from_slice(&raw[8..16]);
    let lease = i64::from_be_bytes(lease);
    Ok(KeyValue {
        key: key.to_owned(),
        value: raw[16..].to_vec(),
        mod_revision: u64::from_be_bytes(rev),
        lease: (lease != 0).then_some(LeaseId(lease)),
    })
}

/// The first key after every key starting with `prefix` (its last ASCII byte plus one).
fn prefix_end(prefix: &str) -> Option<String> {
    let last = *prefix.as_bytes().last()?;
    if !last.is_ascii() || last == 0x7f {
        return None;
    }
    let mut end = prefix[..prefix.len() - 1].to_owned();
    end.push(char::from(last + 1));
    Some(end)
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`. Must be called inside a tokio runtime:
    /// it starts the lease sweeper, which ends when the store is dropped.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir: PathBuf = dir.as_ref().to_owned();
        let db = tokio::task::spawn_blocking(move || open_db(&dir))
            .await
            .map_err(backend)??;
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let inner = Arc::new(Inner {
            db,
            write_order: Mutex::new(()),
            events,
        });
        tokio::spawn(sweeper(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(backend)?
    }
}

fn open_db(dir: &Path) -> Result<Database, StoreError> {
    std::fs::create_dir_all(dir).map_err(backend)?;
    let path = dir.join("shardcast.redb");
    // A store dropped a moment ago may still be closing (its sweeper holds the last reference
    // for one sweep); wait for it rather than failing a restart in the same process.
    let mut attempts = 0;
    let db = loop {
        match Database::create(&path) {
            Ok(db) => break db,
            Err(DatabaseError::DatabaseAlreadyOpen) if attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(backend(e)),
        }
    };
    let tx = db.begin_write().map_err(backend)?;
    tx.open_table(KV).map_err(backend)?;
    tx.open_table(LEASES).map_err(backend)?;
    tx.open_table(LEASE_KEYS).map_err(backend)?;
    tx.open_table(META).map_err(backend)?;
    tx.commit().map_err(backend)?;
    Ok(db)
}

async fn sweeper(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let result = tokio::task::spawn_blocking(move || strong.sweep_expired(now_ms())).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(target: "store", error = %e, "lease sweep failed"),
            Err(e) => tracing::warn!(target: "store", error = %e, "lease sweep task failed"),
        }
    }
}

/// One write transaction plus the events it will emit after commit.
struct Writer {
    tx: WriteTransaction,
    events: Vec<WatchEvent>,
    revision: u64,
}

impl Writer {
    fn next_revision(&mut self) -> Result<u64, StoreError> {
        if self.revision == 0 {
            let meta = self.tx.open_table(META).map_err(backend)?;
            self.revision = meta
                .get("revision")
                .map_err(backend)?
                .map_or(0, |v| v.value());
        }
        self.revision += 1;
        Ok(self.revision)
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let kv = self.tx.open_table(KV).map_err(backend)?;
        let raw = kv.get(key).map_err(backend)?;
        raw.map(|raw| decode(key, raw.value())).transpose()
    }

    fn put(&mut self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<u64, StoreError> {
        if let Some(lease) = lease {
            let leases = self.tx.open_table(LEASES).map_err(backend)?;
            if leases.get(lease.0).map_err(backend)?.is_none() {
                return Err(StoreError::LeaseNotFound(lease));
            }
        }
        let previous = self.get(key)?;
        let revision = self.next_revision()?;
        {
            let mut lease_keys = self.tx.open_table(LEASE_KEYS).map_err(backend)?;
            if let Some(old) = previous.as_ref().and_then(|p| p.lease) {
                lease_keys.remove((old.0, key)).map_err(backend)?;
            }
            if let Some(lease) = lease {
                lease_keys.insert((lease.0, key), ()).map_err(backend)?;
            }
        }
        let mut kv = self.tx.open_table(KV).map_err(backend)?;
        kv.insert(key, encode(revision, lease, value).as_slice())
            .map_err(backend)?;
        self.events.push(WatchEvent {
            kind: WatchKind::Put,
            key: key.to_owned(),
            value: value.to_vec(),
            revision,
        });
        Ok(revision)
    }

    fn delete(&mut self, key: &str) -> Result<bool, StoreError> {
        let Some(previous) = self.get(key)? else {
            return Ok(false);
        };
        let revision = self.next_revision()?;
        if let Some(lease) = previous.lease {
            let mut lease_keys = self.tx.open_table(LEASE_KEYS).map_err(backend)?;
            lease_keys.remove((lease.0, key)).map_err(backend)?;
        }
        let mut kv = self.tx.open_table(KV).map_err(backend)?;
        kv.remove(key).map_err(backend)?;
        self.events.push(WatchEvent {
            kind: WatchKind::Delete,
            key: key.to_owned(),
            value: Vec::new(),
            revision,
        });
        Ok(true)
    }

    fn drop_lease(&mut self, lease: LeaseId) -> Result<(), StoreError> {
        let keys: Vec<String> = {
            let lease_keys = self.tx.open_table(LEASE_KEYS).map_err(backend)?;
            let range = lease_keys
                .range((lease.0, "")..(lease.0.saturating_add(1), ""))
                .map_err(backend)?;
            let mut keys = Vec::new();
            for entry in range {
                let (k, _) = entry.map_err(backend)?;
                keys.push(k.value().1.to_owned());
            }
            keys
        };
        for key in keys {
            self.delete(&key)?;
        }
        let mut leases = self.tx.open_table(LEASES).map_err(backend)?;
        leases.remove(lease.0).map_err(backend)?;
        Ok(())
    }
}

impl Inner {
    /// Runs `f` in one write transaction; commits and then publishes its events in order.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _order = self.write_order.lock().unwrap_or_else(|p| p.into_inner());
        let tx = self.db.begin_write().map_err(backend)?;
        let mut writer = Writer {
            tx,
            events: Vec::new(),
            revision: 0,
        };
        let out = f(&mut writer)?;
        if writer.revision != 0 {
            let mut meta = writer.tx.open_table(META).map_err(backend)?;
            meta.insert("revision", writer.revision).map_err(backend)?;
        }
        writer.tx.commit().map_err(backend)?;
        for event in writer.events {
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(event);
        }
        Ok(out)
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let kv = tx.open_table(KV).map_err(backend)?;
        let raw = kv.get(key).map_err(backend)?;
        raw.map(|raw| decode(key, raw.value())).transpose()
    }

    fn list_prefix(&self, prefix: &str) -> Result<Vec<KeyValue>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let kv = tx.open_table(KV).map_err(backend)?;
        let mut out = Vec::new();
        for entry in kv.range(prefix..).map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push(decode(key, v.value())?);
        }
        Ok(out)
    }

    fn list_prefix_limited(
        &self,
        prefix: &str,
        limit: usize,
        end: End,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let kv = tx.open_table(KV).map_err(backend)?;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        // Bounded above too, so walking back from the end starts inside the prefix.
        let range = match prefix_end(prefix) {
            Some(end) => kv.range(prefix..end.as_str()),
            None => kv.range(prefix..),
        }
        .map_err(backend)?;
        let entries: Box<dyn Iterator<Item = _>> = match end {
            End::First => Box::new(range),
            End::Last => Box::new(range.rev()),
        };
        for entry in entries {
            let (k, v) = entry.map_err(backend)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                continue;
            }
            out.push(decode(key, v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        if end == End::Last {
            out.reverse();
        }
        Ok(out)
    }

    fn sweep_expired(&self, now: u64) -> Result<(), StoreError> {
        let expired: Vec<LeaseId> = {
            let tx = self.db.begin_read().map_err(backend)?;
            let leases = tx.open_table(LEASES).map_err(backend)?;
            let mut expired = Vec::new();
            for entry in leases.iter().map_err(backend)? {
                let (id, v) = entry.map_err(backend)?;
                if v.value().0 <= now {
                    expired.push(LeaseId(id.value()));
                }
            }
            expired
        };
        if expired.is_empty() {
            return Ok(());
        }
        self.write(|w| {
            for lease in expired {
                // Re-check inside the transaction: a keep-alive may have won the race.
                let still_expired = {
                    let leases = w.tx.open_table(LEASES).map_err(backend)?;
                    let v = leases.get(lease.0).map_err(backend)?;
                    v.is_some_and(|v| v.value().0 <= now)
                };
                if still_expired {
                    w.drop_lease(lease)?;
                }
            }
            Ok(())
        })
    }
}

impl Store for EmbeddedStore {
    fn get(&self, key: &str) -> StoreFuture<'_, Option<KeyValue>> {
        let key = key.to_owned();
        Box::pin(self.blocking(move |i| i.get(&key)))
    }

    fn list_prefix(&self, prefix: &str) -> StoreFuture<'_, Vec<KeyValue>> {
        let prefix = prefix.to_owned();
        Box::pin(self.blocking(move |i| i.list_prefix(&prefix)))
    }

    fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> StoreFuture<'_, u64> {
        let key = key.to_owned();
        Box::pin(self.blocking(move |i| i.write(|w| w.put(&key, &value, lease))))
    }

    fn delete(&self, key: &str) -> StoreFuture<'_, bool> {
        let key = key.to_owned();
        Box::pin(self.blocking(move |i| i.write(|w| w.delete(&key))))
    }

    fn delete_prefix(&self, prefix: &str) -> StoreFuture<'_, u64> {
        let prefix = prefix.to_owned();
        Box::pin(self.blocking(move |i| {
            i.write(|w| {
                let keys: Vec<String> = {
                    let kv = w.tx.open_table(KV).map_err(backend)?;
                    let mut keys = Vec::new();
                    for entry in kv.range(prefix.as_str()..).map_err(backend)? {
                        let (k, _) = entry.map_err(backend)?;
                        if !k.value().starts_with(prefix.as_str()) {
                            break;
                        }
                        keys.push(k.value().to_owned());
                    }
                    keys
                };
                for key in &keys {
                    w.delete(key)?;
                }
                Ok(keys.len() as u64)
            })
        }))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expect: Expect,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> StoreFuture<'_, CasOutcome> {
        let key = key.to_owned();
        Box::pin(self.blocking(move |i| {
            i.write(|w| {
                let current = w.get(&key)?;
                let holds = match (&expect, &current) {
                    (Expect::Absent, None) => true,
                    (Expect::Revision(r), Some(c)) => c.mod_revision == *r,
                    _ => false,
                };
                if !holds {
                    return Ok(CasOutcome::Conflict { current });
                }
                let revision = w.put(&key, &value, lease)?;
                Ok(CasOutcome::Swapped { revision })
            })
        }))
    }

    fn transaction(
        &self,
        when: Vec<(String, Expect)>,
        then: Vec<TxnWrite>,
    ) -> StoreFuture<'_, bool> {
        Box::pin(self.blocking(move |i| {
            i.write(|w| {
                for (key, expect) in &when {
                    let current = w.get(key)?;
                    let holds = match (expect, &current) {
                        (Expect::Absent, None) => true,
                        (Expect::Revision(r), Some(c)) => c.mod_revision == *r,
                        _ => false,
                    };
                    if !holds {
                        return Ok(false);
                    }
                }
                for write in &then {
                    match write {
                        TxnWrite::Put { key, value, lease } => {
                            w.put(key, value, *lease)?;
                        }
                        TxnWrite::Delete { key } => {
                            w.delete(key)?;
                        }
                    }
                }
                Ok(true)
            })
        }))
    }

    fn list_prefix_limited(
        &self,
        prefix: &str,
        limit: usize,
        end: End,
    ) -> StoreFuture<'_, Vec<KeyValue>> {
        let prefix = prefix.to_owned();
        Box::pin(self.blocking(move |i| i.list_prefix_limited(&prefix, limit, end)))
    }

    fn compare_and_delete(&self, key: &str, revision: u64) -> StoreFuture<'_, bool> {
        let key = key.to_owned();
        Box::pin(self.blocking(move |i| {
            i.write(|w| match w.get(&key)? {
                Some(current) if current.mod_revision == revision => w.delete(&key),
                _ => Ok(false),
            })
        }))
    }

    fn grant_lease(&self, ttl: Duration) -> StoreFuture<'_, LeaseId> {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        Box::pin(self.blocking(move |i| {
            i.write(|w| {
                let id = {
                    let mut meta = w.tx.open_table(META).map_err(backend)?;
                    let next = meta
                        .get("next_lease")
                        .map_err(backend)?
                        .map_or(1, |v| v.value());
                    meta.insert("next_lease", next + 1).map_err(backend)?;
                    next as i64
                };
                let mut leases = w.tx.open_table(LEASES).map_err(backend)?;
                leases
                    .insert(id, (now_ms() + ttl_ms, ttl_ms))
                    .map_err(backend)?;
                Ok(LeaseId(id))
            })
        }))
    }

    fn keep_alive(&self, lease: LeaseId) -> StoreFuture<'_, ()> {
        Box::pin(self.blocking(move |i| {
            let now = now_ms();
            let expired = i.write(|w| {
                let mut leases = w.tx.open_table(LEASES).map_err(backend)?;
                let found = leases.get(lease.0).map_err(backend)?.map(|v| v.value());
                match found {
                    None => Err(StoreError::LeaseNotFound(lease)),
                    Some((expires, _)) if expires <= now => Ok(true),
                    Some((_, ttl)) => {
                        leases.insert(lease.0, (now + ttl, ttl)).map_err(backend)?;
                        Ok(false)
                    }
                }
            })?;
            if expired {
                // Expired but not yet swept: sweep it now so the caller's view is consistent.
                i.sweep_expired(now)?;
                return Err(StoreError::LeaseNotFound(lease));
            }
            Ok(())
        }))
    }

    fn revoke_lease(&self, lease: LeaseId) -> StoreFuture<'_, ()> {
        Box::pin(self.blocking(move |i| i.write(|w| w.drop_lease(lease))))
    }

    fn watch_prefix(&self, prefix: &str) -> StoreFuture<'_, WatchStream> {
        let prefix = prefix.to_owned();
        let receiver = self.inner.events.subscribe();
        Box::pin(async move {
            let stream = BroadcastStream::new(receiver).filter_map(move |item| {
                let out = match item {
                    Ok(event) if event.key.starts_with(&prefix) => Some(Ok(event)),
                    Ok(_) => None,
                    Err(BroadcastStreamRecvError::Lagged(_)) => Some(Err(StoreError::WatchLagged)),
                };
                std::future::ready(out)
            });
            Ok(Box::pin(stream) as WatchStream)
        })
    }
}
