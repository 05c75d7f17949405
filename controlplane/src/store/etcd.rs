//! `EtcdStore`: the cluster `Store` on etcd (v3 API via etcd-client).
//!
//! A thin mapping: compare-and-swap is a one-compare transaction (`create_revision == 0` for
//! absent, `mod_revision == r` for an update), leases and prefix watches are etcd's own.
//! Keys are used as given (they already carry the `/shardcast/` root).
//!
//! Must never hold etcd state beyond the client: any control-plane instance can serve any
//! request, so everything shared goes through etcd.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures_util::StreamExt;

use super::{
    CasOutcome, End, Expect, KeyValue, LeaseId, Store, StoreError, StoreFuture, TxnWrite,
    WatchEvent, WatchKind, WatchStream,
};

#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
}

fn backend(e: etcd_client::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn convert(kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let key = kv.key_str().map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        detail: e.to_string(),
    })?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: kv.value().to_vec(),
        mod_revision: kv.mod_revision() as u64,
        lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
    })
}

fn put_options(lease: Option<LeaseId>) -> Option<PutOptions> {
    lease.map(|l| PutOptions::new().with_lease(l.0))
}

/// etcd reports an unknown lease on put as a gRPC error whose text names it.
fn put_error(e: etcd_client::Error, lease: Option<LeaseId>) -> StoreError {
    match lease {
        Some(l) if e.to_string().contains("lease not found") => StoreError::LeaseNotFound(l),
        _ => backend(e),
    }
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (e.g. `["http://127.0.0.1:2379"]`), plain and
    /// without authentication.
    pub async fn connect(endpoints: &[String]) -> Result<Self, StoreError> {
        Self::connect_with(&crate::config::EtcdConfig {
            endpoints: endpoints.to_vec(),
            ..Default::default()
        })
        .await
    }

    /// Connects as `config` says: TLS with the CA (and a client certificate when given),
    /// etcd user and password when given. Authentication is checked here; a TLS problem
    /// shows at the first request (`status_revision` is a cheap one).
    pub async fn connect_with(config: &crate::config::EtcdConfig) -> Result<Self, StoreError> {
        let read = |key: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                StoreError::Backend(format!("etcd.{key}: cannot read {}: {e}", path.display()))
            })
        };
        let mut options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .with_timeout(Duration::from_millis(config.request_timeout_ms));
        if let Some(ca) = &config.ca_file {
            let mut tls = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(read("ca_file", ca)?));
            if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
                tls = tls.identity(etcd_client::Identity::from_pem(
                    read("cert_file", cert)?,
                    read("key_file", key)?,
                ));
            }
            options = options.with_tls(tls);
        }
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            options = options.with_user(user, password);
        }
        let client = Client::connect(&config.endpoints, Some(options))
            .await
            .map_err(backend)?;
        Ok(Self { client })
    }

    /// The revision the cluster is at (a cheap liveness check).
    pub async fn status_revision(&self) -> Result<u64, StoreError> {
        let mut client = self.client.clone();
        let status = client.status().await.map_err(backend)?;
        Ok(status.header().map_or(0, |h| h.revision()) as u64)
    }
}

impl Store for EtcdStore {
    fn get(&self, key: &str) -> StoreFuture<'_, Option<KeyValue>> {
        let key = key.to_owned();
        let mut client = self.client.clone();
        Box::pin(async move {
            let resp = client.get(key, None).await.map_err(backend)?;
            resp.kvs().first().map(convert).transpose()
        })
    }

    fn list_prefix(&self, prefix: &str) -> StoreFuture<'_, Vec<KeyValue>> {
        let prefix = prefix.to_owned();
        let mut client = self.client.clone();
        Box::pin(async move {
            let resp = client
                .get(prefix, Some(GetOptions::new().with_prefix()))
                .await
                .map_err(backend)?;
            resp.kvs().iter().map(convert).collect()
        })
    }

    fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> StoreFuture<'_, u64> {
        let key = key.to_owned();
        let mut client = self.client.clone();
        Box::pin(async move {
            let resp = client
                .put(key, value, put_options(lease))
                .await
                .map_err(|e| put_error(e, lease))?;
            Ok(resp.header().map_or(0, |h| h.revision()) as u64)
        })
    }

    fn delete(&self, key: &str) -> StoreFuture<'_, bool> {
        let key = key.to_owned();
        let mut client = self.client.clone();
        Box::pin(async move {
            let resp = client.delete(key, None).await.map_err(backend)?;
            Ok(resp.deleted() > 0)
        })
    }

    fn delete_prefix(&self, prefix: &str) -> StoreFuture<'_, u64> {
        let prefix = prefix.to_owned();
        let mut client = self.client.clone();
        Box::pin(async move {
            let resp = client
                .delete(prefix, Some(DeleteOptions::new().with_prefix()))
                .await
                .map_err(backend)?;
            Ok(resp.deleted().max(0) as u64)
        })
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expect: Expect,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> StoreFuture<'_, CasOutcome> {
        let key = key.to_owned();
        let mut client = self.client.clone();
        Box::pin(async move {
            let compare = match expect {
                Expect::Absent => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                Expect::Revision(r) => {
                    Compare::mod_revision(key.clone(), CompareOp::Equal, r as i64)
                }
            };
            let txn = Txn::new()
                .when([compare])
                .and_then([TxnOp::put(key.clone(), value, put_options(lease))])
                .or_else([TxnOp::get(key.clone(), None)]);
            let resp = client.txn(txn).await.map_err(|e| put_error(e, lease))?;
            if resp.succeeded() {
                let revision = resp.header().map_or(0, |h| h.revision()) as u64;
                return Ok(CasOutcome::Swapped { revision });
            }
            let mut current = None;
            for op in resp.op_responses() {
                if let TxnOpResponse::Get(get) = op {
                    current = get.kvs().first().map(convert).transpose()?;
                }
            }
            Ok(CasOutcome::Conflict { current })
        })
    }

    fn transaction(
        &self,
        when: Vec<(String, Expect)>,
        then: Vec<TxnWrite>,
    ) -> StoreFuture<'_, bool> {
        let mut client = self.client.clone();
        Box::pin(async move {
            let lease = then.iter().find_map(|w| match w {
                TxnWrite::Put { lease, .. } => *lease,
                TxnWrite::Delete { .. } => None,
            });
            let compares: Vec<Compare> = when
                .into_iter()
                .map(|(key, expect)| match expect {
                    Expect::Absent => Compare::create_revision(key, CompareOp::Equal, 0),
                    Expect::Revision(r) => Compare::mod_revision(key, CompareOp::Equal, r as i64),
                })
                .collect();
            let ops: Vec<TxnOp> = then
                .into_iter()
                .map(|w| match w {
                    TxnWrite::Put { key, value, lease } => {
                        TxnOp::put(key, value, put_options(lease))
                    }
                    TxnWrite::Delete { key } => TxnOp::delete(key, None),
                })
                .collect();
            let txn = Txn::new().when(compares).and_then(ops);
            let resp = client.txn(txn).await.map_err(|e| put_error(e, lease))?;
            Ok(resp.succeeded())
        })
    }

    fn list_prefix_limited(
        &self,
        prefix: &str,
        limit: usize,
        end: End,
    ) -> StoreFuture<'_, Vec<KeyValue>> {
        let prefix = prefix.to_owned();
        let mut client = self.client.clone();
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let order = match end {
                End::First => SortOrder::Ascend,
                End::Last => SortOrder::Descend,
            };
            let options = GetOptions::new()
                .with_prefix()
                .with_limit(limit as i64)
                .with_sort(SortTarget::Key, order);
            let resp = client.get(prefix, Some(options)).await.map_err(backend)?;
            let mut out: Vec<KeyValue> =
                resp.kvs().iter().map(convert).collect::<Result<_, _>>()?;
            if end == End::Last {
                out.reverse();
            }
            Ok(out)
        })
    }

    fn compare_and_delete(&self, key: &str, revision: u64) -> StoreFuture<'_, bool> {
        let key = key.to_owned();
        let mut client = self.client.clone();
        Box::pin(async move {
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    revision as i64,
                )])
                .and_then([TxnOp::delete(key, None)]);
            let resp = client.txn(txn).await.map_err(backend)?;
            Ok(resp.succeeded())
        })
    }

    fn grant_lease(&self, ttl: Duration) -> StoreFuture<'_, LeaseId> {
        let mut client = self.client.clone();
        // etcd counts whole seconds: round up so a lease never lives shorter than asked.
        let secs = ttl.as_millis().div_ceil(1000).max(1) as i64;
        Box::pin(async move {
            let resp = client.lease_grant(secs, None).await.map_err(backend)?;
            Ok(LeaseId(resp.id()))
        })
    }

    fn keep_alive(&self, lease: LeaseId) -> StoreFuture<'_, ()> {
        let mut client = self.client.clone();
        Box::pin(async move {
            // An unknown lease shows up as ttl 0 or as an error naming it, depending on when
            // the server notices.
            let not_found = |e: etcd_client::Error| {
                if e.to_string().contains("lease not found") {
                    StoreError::LeaseNotFound(lease)
                } else {
                    backend(e)
                }
            };
            let (mut keeper, mut responses) =
                client.lease_keep_alive(lease.0).await.map_err(not_found)?;
            keeper.keep_alive().await.map_err(not_found)?;
            match responses.message().await.map_err(not_found)? {
                Some(resp) if resp.ttl() > 0 => Ok(()),
                _ => Err(StoreError::LeaseNotFound(lease)),
            }
        })
    }

    fn revoke_lease(&self, lease: LeaseId) -> StoreFuture<'_, ()> {
        let mut client = self.client.clone();
        Box::pin(async move {
            match client.lease_revoke(lease.0).await {
                Ok(_) => Ok(()),
                Err(e) if e.to_string().contains("lease not found") => Ok(()),
                Err(e) => Err(backend(e)),
            }
        })
    }

    fn watch_prefix(&self, prefix: &str) -> StoreFuture<'_, WatchStream> {
        let prefix = prefix.to_owned();
        let mut client = self.client.clone();
        Box::pin(async move {
            let stream = client
                .watch(prefix, Some(WatchOptions::new().with_prefix()))
                .await
                .map_err(backend)?;
            let events = stream.flat_map(|resp| {
                let items: Vec<Result<WatchEvent, StoreError>> = match resp {
                    Err(e) => vec![Err(backend(e))],
                    Ok(resp) if resp.canceled() => {
                        vec![Err(StoreError::Backend(format!(
                            "watch canceled: {}",
                            resp.cancel_reason()
                        )))]
                    }
                    Ok(resp) => resp
                        .events()
                        .iter()
                        .filter_map(|event| {
                            let kv = event.kv()?;
                            let kind = match event.event_type() {
                                EventType::Put => WatchKind::Put,
                                EventType::Delete => WatchKind::Delete,
                            };
                            Some(convert(kv).map(|kv| WatchEvent {
                                kind,
                                key: kv.key,
                                value: kv.value,
                                revision: kv.mod_revision,
                            }))
                        })
                        .collect(),
                };
                futures_util::stream::iter(items)
            });
            Ok(Box::pin(events) as WatchStream)
        })
    }
}
