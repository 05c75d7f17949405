//! Tenants and their API key pairs (admin operations), and API-key authentication.
//!
//! Removing a tenant revokes its keys first (its callers stop at once), then closes every
//! room it owns, then sweeps anything left under its prefixes.

use base64::Engine;
use rand::distributions::Alphanumeric;
use rand::{Rng, RngCore};

use super::events::RoomEvents;
use super::{now_unix_secs, rooms};
use crate::auth::constant_time_eq;
use crate::auth::credentials::bad_credentials;
use crate::error::ApiError;
use crate::ids::{ApiKeyId, TenantId};
use crate::store::records::{ApiKeyRecord, RoomRecord, TenantRecord};
use crate::store::typed::{create_json, get_json, list_json};
use crate::store::{keys, Store};

pub const MAX_TENANT_NAME: usize = 256;

pub async fn create(
    store: &dyn Store,
    id: TenantId,
    name: Option<String>,
) -> Result<TenantRecord, ApiError> {
    let name = name.unwrap_or_else(|| id.to_string());
    if name.len() > MAX_TENANT_NAME {
        return Err(ApiError::InvalidRequest(format!(
            "tenant name longer than {MAX_TENANT_NAME} bytes"
        )));
    }
    let record = TenantRecord {
        id: id.clone(),
        name,
        created_at: now_unix_secs(),
    };
    match create_json(store, &keys::tenant(&id), &record, None).await? {
        Ok(_) => Ok(record),
        Err(_) => Err(ApiError::conflict(
            "tenant_exists",
            format!("tenant {id} already exists"),
        )),
    }
}

pub async fn list(store: &dyn Store) -> Result<Vec<TenantRecord>, ApiError> {
    Ok(list_json::<TenantRecord>(store, &keys::tenants_prefix())
        .await?
        .into_iter()
        .map(|v| v.value)
        .collect())
}

pub async fn get(store: &dyn Store, id: &TenantId) -> Result<TenantRecord, ApiError> {
    get_json::<TenantRecord>(store, &keys::tenant(id))
        .await?
        .map(|v| v.value)
        .ok_or_else(|| ApiError::tenant_not_found(id))
}

pub async fn remove(
    store: &dyn Store,
    events: &dyn RoomEvents,
    id: &TenantId,
) -> Result<(), ApiError> {
    get(store, id).await?;
    for key in list_api_keys(store, id).await? {
        store.delete(&keys::api_key(&key.id)).await?;
    }
    store.delete(&keys::tenant(id)).await?;
    store.delete(&crate::webhooks::target::key(id)).await?;
    let rooms = list_json::<RoomRecord>(store, &keys::rooms_prefix(id)).await?;
    for room in rooms {
        rooms::close(store, events, id, &room.value.name).await?;
    }
    // Leftovers of rooms closed concurrently or half-written: nothing of the tenant remains.
    store
        .delete_prefix(&keys::participants_tenant_prefix(id))
        .await?;
    store.delete_prefix(&keys::chat_tenant_prefix(id)).await?;
    store
        .delete_prefix(&keys::chat_seq_tenant_prefix(id))
        .await?;
    store
        .delete_prefix(&keys::bindings_tenant_prefix(id))
        .await?;
    // Password windows would expire anyway; removing them frees their leases' keys now.
    store
        .delete_prefix(&keys::password_failures_tenant_prefix(id))
        .await?;
    store.delete_prefix(&keys::seats_tenant_prefix(id)).await?;
    Ok(())
}

/// A new key pair for `tenant`. The returned record is the only time the secret is shown.
pub async fn create_api_key(
    store: &dyn Store,
    tenant: &TenantId,
) -> Result<ApiKeyRecord, ApiError> {
    get(store, tenant).await?;
    let suffix: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect();
    let id = ApiKeyId::parse(format!("AK{suffix}"))?;
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let record = ApiKeyRecord {
        id: id.clone(),
        tenant: tenant.clone(),
        secret: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        created_at: now_unix_secs(),
    };
    match create_json(store, &keys::api_key(&id), &record, None).await? {
        Ok(_) => Ok(record),
        // 20 random alphanumerics colliding is not going to happen; refuse rather than clobber.
        Err(_) => Err(ApiError::Internal("api key id collision".into())),
    }
}

/// The tenant's keys, secrets included: callers must strip them before returning.
pub async fn list_api_keys(
    store: &dyn Store,
    tenant: &TenantId,
) -> Result<Vec<ApiKeyRecord>, ApiError> {
    Ok(list_json::<ApiKeyRecord>(store, &keys::api_keys_prefix())
        .await?
        .into_iter()
        .map(|v| v.value)
        .filter(|k| k.tenant == *tenant)
        .collect())
}

pub async fn revoke_api_key(
    store: &dyn Store,
    tenant: &TenantId,
    key: &ApiKeyId,
) -> Result<(), ApiError> {
    get(store, tenant).await?;
    let found = get_json::<ApiKeyRecord>(store, &keys::api_key(key)).await?;
    match found {
        Some(k) if k.value.tenant == *tenant => {
            store.delete(&keys::api_key(key)).await?;
            Ok(())
        }
        // Another tenant's key is "not found" here: tenants never learn of each other.
        _ => Err(ApiError::api_key_not_found(key)),
    }
}

/// Checks an API key pair; the key's tenant must still exist.
pub async fn authenticate(
    store: &dyn Store,
    key_id: &ApiKeyId,
    secret: &str,
) -> Result<ApiKeyRecord, ApiError> {
    let key = get_json::<ApiKeyRecord>(store, &keys::api_key(key_id))
        .await?
        .ok_or_else(bad_credentials)?
        .value;
    if !constant_time_eq(key.secret.as_bytes(), secret.as_bytes()) {
        return Err(bad_credentials());
    }
    if get_json::<TenantRecord>(store, &keys::tenant(&key.tenant))
        .await?
        .is_none()
    {
        return Err(bad_credentials());
    }
    Ok(key)
}
