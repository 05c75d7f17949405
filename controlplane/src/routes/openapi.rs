//! `GET /v1/openapi.json`: the OpenAPI 3.1 document, written by hand as JSON.
//!
//! Kept next to the routes and checked by `tests/rest.rs` against `routes::table()`: every
//! served (method, path) must be documented here and nothing else may be.

use axum::Json;
use serde_json::{json, Map, Value};

use super::{route, RouteSpec, Verb};

pub fn routes() -> Vec<RouteSpec> {
    vec![route(Verb::Get, "/v1/openapi.json", serve)]
}

async fn serve() -> Json<Value> {
    Json(document())
}

#[derive(Clone, Copy)]
enum Auth {
    None,
    Admin,
    Tenant,
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn param(name: &str, doc: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" }, "description": doc })
}

/// One operation. `errors` are the stable codes it can answer with (besides auth ones).
fn op(
    summary: &str,
    auth: Auth,
    body: Option<&str>,
    ok: (&str, Option<&str>),
    errors: &[&str],
) -> Value {
    let mut o = Map::new();
    o.insert("summary".into(), json!(summary));
    let mut codes: Vec<&str> = errors.to_vec();
    match auth {
        Auth::None => {
            o.insert("security".into(), json!([]));
        }
        Auth::Admin => {
            o.insert("security".into(), json!([{ "adminKey": [] }]));
            codes.extend(["unauthorized", "forbidden"]);
        }
        Auth::Tenant => {
            o.insert("security".into(), json!([{ "apiKey": [] }]));
            codes.push("unauthorized");
        }
    }
    if let Some(b) = body {
        o.insert(
            "requestBody".into(),
            json!({ "required": true, "content": { "application/json": { "schema": schema(b) } } }),
        );
        codes.extend(["invalid_json", "payload_too_large"]);
    }
    // Any request may outlast `http.request_timeout_secs` (408).
    codes.push("request_timeout");
    let mut responses = Map::new();
    let ok_response = match ok.1 {
        Some(s) => {
            json!({ "description": "success", "content": { "application/json": { "schema": schema(s) } } })
        }
        None => json!({ "description": "success, no body" }),
    };
    responses.insert(ok.0.into(), ok_response);
    responses.insert(
        "default".into(),
        json!({
            "description": format!("error; code is one of: {}", codes.join(", ")),
            "content": { "application/json": { "schema": schema("Error") } }
        }),
    );
    o.insert("responses".into(), Value::Object(responses));
    Value::Object(o)
}

fn with_params(mut operation: Value, params: &[&Value]) -> Value {
    if !params.is_empty() {
        operation["parameters"] = Value::Array(params.iter().map(|p| (*p).clone()).collect());
    }
    operation
}

pub fn document() -> Value {
    let room = param("room", "room name");
    let tenant = param("tenant", "tenant id");
    let key = param("key", "api key id");
    let who = param("identity", "participant identity");
    let track = param("track", "track id (a number)");
    let node = param("node", "media node id");
    let limit = json!({ "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1 } });
    let rp = [&room];
    let rw = [&room, &who];

    let paths = json!({
        "/v1/openapi.json": {
            "get": op("This document", Auth::None, None, ("200", None), &[])
        },
        "/v1/tenants": {
            "post": op("Create a tenant", Auth::Admin, Some("CreateTenant"), ("201", Some("Tenant")), &["tenant_exists", "invalid_request"]),
            "get": op("List tenants", Auth::Admin, None, ("200", Some("TenantList")), &[])
        },
        "/v1/tenants/{tenant}": {
            "get": with_params(op("Get a tenant", Auth::Admin, None, ("200", Some("Tenant")), &["tenant_not_found"]), &[&tenant]),
            "delete": with_params(op("Remove a tenant, its keys and rooms", Auth::Admin, None, ("204", None), &["tenant_not_found"]), &[&tenant])
        },
        "/v1/tenants/{tenant}/keys": {
            "post": with_params(op("Create an API key pair (the secret is shown only here)", Auth::Admin, None, ("201", Some("ApiKeyCreated")), &["tenant_not_found"]), &[&tenant]),
            "get": with_params(op("List API keys (no secrets)", Auth::Admin, None, ("200", Some("ApiKeyList")), &["tenant_not_found"]), &[&tenant])
        },
        "/v1/tenants/{tenant}/webhook": {
            "put": with_params(op("Set the tenant's webhook URL and signing secret (a generated secret is shown only here)", Auth::Admin, Some("SetWebhook"), ("200", Some("Webhook")), &["tenant_not_found", "invalid_webhook_url", "webhook_unreachable", "invalid_webhook_secret"]), &[&tenant]),
            "get": with_params(op("Get the tenant's webhook (no secret)", Auth::Admin, None, ("200", Some("Webhook")), &["tenant_not_found", "webhook_not_found"]), &[&tenant]),
            "delete": with_params(op("Remove the tenant's webhook", Auth::Admin, None, ("204", None), &["tenant_not_found", "webhook_not_found"]), &[&tenant])
        },
        "/v1/tenants/{tenant}/keys/{key}": {
            "delete": with_params(op("Revoke an API key", Auth::Admin, None, ("204", None), &["tenant_not_found", "api_key_not_found"]), &[&tenant, &key])
        },
        "/v1/rooms": {
            "post": op("Create a room", Auth::Tenant, Some("CreateRoom"), ("201", Some("Room")), &["room_exists", "invalid_request"]),
            "get": op("List the tenant's rooms", Auth::Tenant, None, ("200", Some("RoomList")), &[])
        },
        "/v1/rooms/{room}": {
            "get": with_params(op("Get a room", Auth::Tenant, None, ("200", Some("Room")), &["room_not_found"]), &rp),
            "patch": with_params(op("Change room settings or password", Auth::Tenant, Some("UpdateRoom"), ("200", Some("Room")), &["room_not_found", "invalid_request"]), &rp),
            "delete": with_params(op("Close and delete a room", Auth::Tenant, None, ("204", None), &["room_not_found"]), &rp)
        },
        "/v1/rooms/{room}/participants": {
            "get": with_params(op("List participants (joined and waiting)", Auth::Tenant, None, ("200", Some("ParticipantList")), &["room_not_found"]), &rp)
        },
        "/v1/rooms/{room}/participants/{identity}": {
            "get": with_params(op("Get a participant", Auth::Tenant, None, ("200", Some("Participant")), &["room_not_found", "participant_not_found"]), &rw),
            "delete": with_params(op("Remove (kick) a participant", Auth::Tenant, None, ("204", None), &["room_not_found", "participant_not_found"]), &rw)
        },
        "/v1/rooms/{room}/participants/{identity}/tracks/{track}/mute": {
            "post": with_params(op("Mute or unmute a published track", Auth::Tenant, Some("MuteTrack"), ("200", Some("Participant")), &["room_not_found", "participant_not_found", "track_not_found", "invalid_request"]), &[&room, &who, &track])
        },
        "/v1/rooms/{room}/participants/{identity}/pause_video": {
            "post": with_params(op("Pause or resume all of a participant's video", Auth::Tenant, Some("PauseVideo"), ("200", Some("Participant")), &["room_not_found", "participant_not_found"]), &rw)
        },
        "/v1/rooms/{room}/participants/{identity}/permissions": {
            "patch": with_params(op("Change a participant's role and grants (applied to its live session)", Auth::Tenant, Some("GrantsUpdate"), ("200", Some("Participant")), &["room_not_found", "participant_not_found"]), &rw)
        },
        "/v1/rooms/{room}/participants/{identity}/admit": {
            "post": with_params(op("Admit a participant from the waiting room", Auth::Tenant, None, ("200", Some("Participant")), &["room_not_found", "participant_not_found", "not_waiting"]), &rw)
        },
        "/v1/rooms/{room}/participants/{identity}/deny": {
            "post": with_params(op("Turn a participant in the waiting room away", Auth::Tenant, None, ("204", None), &["room_not_found", "participant_not_found", "not_waiting"]), &rw)
        },
        "/v1/rooms/{room}/tokens": {
            "post": with_params(op("Mint an access token", Auth::Tenant, Some("TokenRequest"), ("201", Some("Token")), &["room_not_found", "invalid_request"]), &rp)
        },
        "/v1/rooms/{room}/chat": {
            "get": with_params(op("Chat history, oldest first", Auth::Tenant, None, ("200", Some("ChatHistory")), &["room_not_found", "invalid_request"]), &[&room, &limit])
        },
        "/v1/nodes": {
            "get": op("List live media nodes", Auth::Admin, None, ("200", Some("NodeList")), &[])
        },
        "/v1/nodes/{node}/drain": {
            "post": with_params(op("Drain a node: no new rooms; its WebSocket sessions move to another node when one takes rooms", Auth::Admin, None, ("200", Some("Node")), &["node_not_found"]), &[&node]),
            "delete": with_params(op("Stop draining a node", Auth::Admin, None, ("200", Some("Node")), &["node_not_found"]), &[&node])
        }
    });

    // A map of its own: one is past what `json!` expands within the default recursion limit.
    let eg = param("egress", "egress id");
    let egress = json!({
        "/v1/rooms/{room}/egress": {
            "post": with_params(op("Start recording or streaming (HLS) a participant or the active speaker (answers at once, state starting)", Auth::Tenant, Some("StartEgress"), ("201", Some("Egress")), &["room_not_found", "nothing_to_record", "egress_exists", "room_full", "room_closed_to_egress", "egress_unavailable", "invalid_request", "invalid_json"]), &rp),
            "get": with_params(op("List the room's egresses this instance started, oldest first", Auth::Tenant, None, ("200", Some("EgressList")), &["room_not_found", "egress_unavailable"]), &rp)
        },
        "/v1/rooms/{room}/egress/{egress}": {
            "get": with_params(op("Get an egress", Auth::Tenant, None, ("200", Some("Egress")), &["room_not_found", "egress_not_found"]), &[&room, &eg]),
            "delete": with_params(op("Stop an egress; answers once its file is finished", Auth::Tenant, None, ("200", Some("Egress")), &["room_not_found", "egress_not_found"]), &[&room, &eg])
        }
    });
    let mut paths = paths;
    if let (Some(all), Value::Object(more)) = (paths.as_object_mut(), egress) {
        all.extend(more);
    }

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Shardcast control plane",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Rooms, participants, tokens, tenants and media nodes. Errors are JSON {code, message}; see docs/API.md."
        },
        "security": [{ "apiKey": [] }],
        "paths": paths,
        "webhooks": webhook_events(),
        "components": {
            "securitySchemes": {
                "apiKey": { "type": "http", "scheme": "basic", "description": "<api key id>:<api secret>" },
                "adminKey": { "type": "http", "scheme": "bearer", "description": "the admin key (SHARDCAST_ADMIN_KEY)" }
            },
            "schemas": schemas()
        }
    })
}

/// The events Shardcast POSTs to a tenant's webhook URL (OpenAPI 3.1 `webhooks`).
fn webhook_events() -> Value {
    let events = [
        (
            "room_started",
            "A room was created (REST, first join with auto-create, dev token)",
            "EmptyPayload",
        ),
        (
            "room_finished",
            "A room was deleted (REST, or its tenant removed)",
            "EmptyPayload",
        ),
        (
            "participant_joined",
            "A participant entered a room",
            "ParticipantJoinedPayload",
        ),
        (
            "participant_left",
            "A participant left a room",
            "ParticipantLeftPayload",
        ),
        (
            "track_published",
            "A participant published a track",
            "TrackPublishedPayload",
        ),
        (
            "track_unpublished",
            "A track is no longer published",
            "TrackUnpublishedPayload",
        ),
        (
            "egress_started",
            "An egress (recording, HLS) was started",
            "EgressPayload",
        ),
        (
            "egress_updated",
            "An egress became active: its file or playlist is being written",
            "EgressPayload",
        ),
        (
            "egress_ended",
            "An egress ended (complete or failed), its file finished",
            "EgressPayload",
        ),
    ];
    let mut out = Map::new();
    for (name, summary, payload) in events {
        let body = json!({ "allOf": [schema("WebhookEvent"), { "type": "object", "properties": {
            "event": { "const": name }, "payload": schema(payload) } }] });
        out.insert(
            name.into(),
            json!({ "post": {
                "summary": summary,
                "parameters": [
                    { "name": "Shardcast-Signature", "in": "header", "required": true, "schema": { "type": "string" },
                      "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\" under the tenant's signing secret>" },
                    { "name": "Shardcast-Event", "in": "header", "required": true, "schema": { "type": "string" } },
                    { "name": "Shardcast-Event-Id", "in": "header", "required": true, "schema": { "type": "string" } },
                    { "name": "Shardcast-Attempt", "in": "header", "required": true, "schema": { "type": "integer", "minimum": 1 } }
                ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": body } } },
                "responses": { "2XX": { "description": "received; any other answer (or none within webhooks.timeout_ms) is retried" } }
            } }),
        );
    }
    Value::Object(out)
}

fn schemas() -> Value {
    let grants = json!({
        "type": "object",
        "required": ["canPublish", "canSubscribe", "canChat", "roomAdmin"],
        "properties": {
            "canPublish": { "type": "boolean" }, "canSubscribe": { "type": "boolean" },
            "canChat": { "type": "boolean" }, "roomAdmin": { "type": "boolean" }
        }
    });
    let role = json!({ "type": "string", "enum": ["host", "participant", "viewer"] });
    let node = json!({ "type": "object", "properties": {
        "id": { "type": "string" }, "api_address": { "type": "string" }, "capacity": { "type": "integer" },
        "peers": { "type": "integer" }, "rooms": { "type": "integer" }, "utilization": { "type": "number" },
        "updated_at_ms": { "type": "integer" }, "draining": { "type": "boolean" },
        "cpu": { "type": "number", "description": "the shards' measured CPU share in their last second, averaged; utilization is the larger of it and the fullest shard's peer share" },
        "region": { "type": "string", "description": "the node's cluster.region; absent when unlabelled" } } });
    let room_node = json!({ "type": "object", "required": ["id", "region", "live"], "properties": {
        "id": { "type": "string" }, "region": { "type": ["string", "null"] },
        "live": { "type": "boolean", "description": "false: the node's registration is gone; the room moves at its next offer" } } });
    let video_codecs = json!({ "type": "array", "uniqueItems": true,
        "items": { "type": "string", "enum": ["vp8", "vp9", "h264", "av1"] },
        "description": "video codecs the room prefers, most preferred first; publishers send the first of them they offered" });
    let source = json!({ "type": "string", "enum": ["camera", "microphone", "screen", "screen_audio"],
        "description": "what the track carries, as its publisher said in its signaling offer's `sources`; camera or microphone by default" });
    let mut schemas = json!({
        "Error": { "type": "object", "required": ["code", "message"], "properties": {
            "code": { "type": "string" }, "message": { "type": "string" } } },
        "CreateTenant": { "type": "object", "required": ["id"], "additionalProperties": false, "properties": {
            "id": { "type": "string" }, "name": { "type": "string" } } },
        "Tenant": { "type": "object", "properties": {
            "id": { "type": "string" }, "name": { "type": "string" }, "created_at": { "type": "integer" } } },
        "TenantList": { "type": "object", "properties": { "tenants": { "type": "array", "items": schema("Tenant") } } },
        "ApiKeyCreated": { "type": "object", "properties": {
            "id": { "type": "string" }, "tenant": { "type": "string" }, "secret": { "type": "string" }, "created_at": { "type": "integer" } } },
        "ApiKey": { "type": "object", "properties": {
            "id": { "type": "string" }, "tenant": { "type": "string" }, "created_at": { "type": "integer" } } },
        "ApiKeyList": { "type": "object", "properties": { "keys": { "type": "array", "items": schema("ApiKey") } } },
        "CreateRoom": { "type": "object", "required": ["name"], "additionalProperties": false, "properties": {
            "name": { "type": "string" }, "password": { "type": "string" },
            "max_participants": { "type": "integer", "minimum": 1 }, "ask_before_join": { "type": "boolean" },
            "empty_timeout_secs": { "type": "integer" }, "video_codecs": video_codecs } },
        "UpdateRoom": { "type": "object", "additionalProperties": false, "properties": {
            "password": { "type": ["string", "null"] }, "max_participants": { "type": ["integer", "null"] },
            "ask_before_join": { "type": "boolean" }, "empty_timeout_secs": { "type": "integer" },
            "video_codecs": video_codecs } },
        "Room": { "type": "object", "properties": {
            "name": { "type": "string" }, "has_password": { "type": "boolean" },
            "max_participants": { "type": ["integer", "null"] }, "ask_before_join": { "type": "boolean" },
            "empty_timeout_secs": { "type": "integer" }, "video_codecs": video_codecs,
            "created_at": { "type": "integer" },
            "nodes": { "type": "array", "items": schema("RoomNode"),
                "description": "GET /v1/rooms/{room} only: the media nodes carrying the room (empty until it is placed)" } } },
        "RoomNode": room_node,
        "RoomList": { "type": "object", "properties": { "rooms": { "type": "array", "items": schema("Room") } } },
        "Grants": grants,
        "GrantsUpdate": { "type": "object", "additionalProperties": false, "properties": {
            "role": { "type": "string", "enum": ["host", "participant", "viewer"] },
            "canPublish": { "type": "boolean" }, "canSubscribe": { "type": "boolean" },
            "canChat": { "type": "boolean" }, "roomAdmin": { "type": "boolean" } } },
        "Track": { "type": "object", "properties": {
            "id": { "type": "integer" }, "kind": { "type": "string", "enum": ["audio", "video"] }, "muted": { "type": "boolean" },
            "source": source,
            "rids": { "type": "array", "items": { "type": "string" }, "description": "simulcast rids the publisher declared; empty for a single-layer track" } } },
        "Participant": { "type": "object", "properties": {
            "identity": { "type": "string" }, "name": { "type": "string" }, "role": role,
            "grants": schema("Grants"), "state": { "type": "string", "enum": ["waiting", "joined"] },
            "node": { "type": ["string", "null"] }, "peer": { "type": ["integer", "null"] },
            "tracks": { "type": "array", "items": schema("Track") }, "video_paused": { "type": "boolean" },
            "joined_at": { "type": "integer" } } },
        "ParticipantList": { "type": "object", "properties": { "participants": { "type": "array", "items": schema("Participant") } } },
        "MuteTrack": { "type": "object", "required": ["muted"], "additionalProperties": false, "properties": { "muted": { "type": "boolean" } } },
        "PauseVideo": { "type": "object", "required": ["paused"], "additionalProperties": false, "properties": { "paused": { "type": "boolean" } } },
        "TokenRequest": { "type": "object", "required": ["identity"], "additionalProperties": false, "properties": {
            "identity": { "type": "string" }, "name": { "type": "string" },
            "role": { "type": "string", "enum": ["host", "participant", "viewer"] },
            "grants": schema("Grants"), "ttl_secs": { "type": "integer", "minimum": 1 },
            "region": { "type": "string", "description": "where the room is placed if this participant places it (a node of this region when one takes rooms); default: the control plane's cluster.region" } } },
        "Token": { "type": "object", "properties": {
            "token": { "type": "string" }, "identity": { "type": "string" }, "room": { "type": "string" }, "expires_at": { "type": "integer" } } },
        "ChatMessage": { "type": "object", "properties": {
            "seq": { "type": "integer" }, "from": { "type": "string" }, "name": { "type": "string" },
            "text": { "type": "string" }, "sent_at_ms": { "type": "integer" } } },
        "ChatHistory": { "type": "object", "properties": { "messages": { "type": "array", "items": schema("ChatMessage") } } },
        "Node": node,
        "NodeList": { "type": "object", "properties": { "nodes": { "type": "array", "items": schema("Node") } } }
    });
    // Two maps: one is past what `json!` expands within the default recursion limit.
    let webhooks = json!({
        "SetWebhook": { "type": "object", "required": ["url"], "additionalProperties": false, "properties": {
            "url": { "type": "string", "description": "http:// or https://, no credentials, at most 2048 bytes" },
            "secret": { "type": "string", "minLength": 16, "maxLength": 256,
                "description": "printable ASCII without spaces; omitted: keep the current one or generate one" } } },
        "Webhook": { "type": "object", "required": ["tenant", "url", "secret_hint", "updated_at"], "properties": {
            "tenant": { "type": "string" }, "url": { "type": "string" },
            "secret_hint": { "type": "string", "description": "… and the secret's last 4 characters" },
            "secret": { "type": "string", "description": "only in the answer to the PUT that generated it" },
            "updated_at": { "type": "integer" } } },
        "WebhookEvent": { "type": "object", "required": ["id", "event", "tenant", "room", "timestamp", "payload"], "properties": {
            "id": { "type": "string", "description": "the same on every attempt of one event" },
            "event": { "type": "string", "enum": ["room_started", "room_finished", "participant_joined", "participant_left", "track_published", "track_unpublished", "egress_started", "egress_updated", "egress_ended"] },
            "tenant": { "type": "string" }, "room": { "type": "string" },
            "timestamp": { "type": "integer", "description": "when it happened, Unix milliseconds" },
            "payload": { "type": "object" } } },
        "EmptyPayload": { "type": "object", "additionalProperties": false },
        "WireParticipant": { "type": "object", "properties": {
            "identity": { "type": "string" }, "name": { "type": "string" }, "role": role, "grants": schema("Grants") } },
        "WireTrack": { "type": "object", "properties": {
            "id": { "type": "string", "description": "lower-case hex, as in the signaling protocol" },
            "identity": { "type": "string" }, "kind": { "type": "string", "enum": ["audio", "video"] },
            "source": source,
            "rids": { "type": "array", "items": { "type": "string" } }, "muted": { "type": "boolean" } } },
        "ParticipantJoinedPayload": { "type": "object", "required": ["participant"], "properties": { "participant": schema("WireParticipant") } },
        "ParticipantLeftPayload": { "type": "object", "required": ["identity"], "properties": { "identity": { "type": "string" } } },
        "TrackPublishedPayload": { "type": "object", "required": ["track"], "properties": { "track": schema("WireTrack") } },
        "TrackUnpublishedPayload": { "type": "object", "required": ["identity", "track_id"], "properties": {
            "identity": { "type": "string" }, "track_id": { "type": "string" } } }
    });
    if let (Some(all), serde_json::Value::Object(more)) = (schemas.as_object_mut(), webhooks) {
        all.extend(more);
    }
    let state = json!({ "type": "string", "enum": ["starting", "active", "ending", "complete", "failed"],
        "description": "starting: connecting, waiting for media; active: the file is being written; ending: asked to stop; complete: the file is finished; failed: see error" });
    let egress = json!({
        "StartEgress": { "type": "object", "required": ["kind"], "additionalProperties": false, "properties": {
            "kind": { "type": "string", "enum": ["record", "hls"] },
            "participant": { "type": "string", "description": "the identity whose audio and video are recorded or streamed; omitted: the room's active speaker (its video and audio, switched at each new speaker)" } } },
        "Egress": { "type": "object", "required": ["id", "room", "kind", "participant", "state", "started_at", "bytes", "dropped_packets"], "properties": {
            "id": { "type": "string" }, "room": { "type": "string" },
            "kind": { "type": "string", "enum": ["record", "hls"] },
            "participant": { "type": ["string", "null"], "description": "null: the egress follows the active speaker" },
            "speaker": { "type": "string", "description": "following the active speaker: whom it records now" },
            "playlist": { "type": "string", "description": "hls: the playlist's URL path on this server, /hls/{id}/{key}/index.m3u8 (a capability URL)" },
            "state": state,
            "started_at": { "type": "integer", "description": "Unix seconds" },
            "ended_at": { "type": ["integer", "null"] },
            "file": { "type": ["string", "null"], "description": "absolute path on the control plane's host: .webm (VP8/VP9, Opus) or .mp4 (H.264); hls: the directory of the playlist and segments" },
            "bytes": { "type": "integer", "description": "the file's size" },
            "dropped_packets": { "type": "integer", "description": "packets the pipeline could not take in time" },
            "end_reason": { "type": ["string", "null"], "enum": ["stopped", "participant_left", "room_empty", "server_shutdown", "error", null] },
            "error": { "type": ["string", "null"] } } },
        "EgressList": { "type": "object", "properties": { "egresses": { "type": "array", "items": schema("Egress") } } },
        "EgressPayload": { "type": "object", "required": ["egress"], "properties": { "egress": schema("Egress") } }
    });
    if let (Some(all), serde_json::Value::Object(more)) = (schemas.as_object_mut(), egress) {
        all.extend(more);
    }
    schemas
}
