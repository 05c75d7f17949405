//! Egress: media leaving a room other than to its participants. Today one kind, `record`: a
//! participant's audio and video written to a file (issue 18; HLS is the next kind).
//!
//! An egress subscribes like any WHEP player — a hub session of its own (identity
//! `egress-…`, shown in the room as "Recording"), a `Play` peer on the room's media node —
//! through a str0m subscriber in this process (`receiver`), and hands the RTP to GStreamer
//! (`pipeline`), which muxes it into `{egress.dir}/{tenant}/{room}/{id}.webm|mp4`.
//!
//! Life of one: `starting` (connecting, waiting for the first media) → `active` (the
//! pipeline writes) → `ending` (asked to stop: `DELETE`, the participant left, the process
//! stops) → `complete` (the file is finished) or `failed` (with `error`). Egresses are kept
//! by the control-plane instance that started them (listed by it alone), the ended ones
//! up to [`KEEP_ENDED`].
//!
//! Must never: leave a file unfinished when it could finish it (every stop path ends the
//! streams and waits for the muxer), or run media on the async runtime's threads.

pub mod hls;
pub mod pipeline;
pub mod receiver;
mod record;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shardcast_dataplane::node::{MediaKind, PeerRole, TrackId};
use tokio::sync::watch;

use crate::error::ApiError;
use crate::services::now_unix_secs;
use crate::signaling::bus::RoomEventKind;
use crate::signaling::hub::{Hub, Plays};
use crate::signaling::messages::track_from_wire;
use crate::signaling::messages::ServerMsg;
use crate::signaling::services::{Grants, Member, SignalError};
use crate::webhooks::event::EventKind;

/// Ended egresses kept for `GET` per instance (the oldest go first).
pub const KEEP_ENDED: usize = 256;
/// How often a recording checks that its participant still publishes.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);

/// `[egress]`: where recordings go and what runs them.
#[derive(Debug, Clone)]
pub struct EgressSettings {
    /// Recordings are written under this directory.
    pub dir: PathBuf,
    /// The `gst-launch-1.0` program.
    pub gst_launch: PathBuf,
    /// How long a stopping pipeline may take to finish its file before it is killed.
    pub finish_timeout: Duration,
    /// Recordings this instance runs at once (each is a thread, a socket and a child
    /// process); more are refused with `503 egress_unavailable`.
    pub max_active: usize,
}

impl EgressSettings {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            gst_launch: PathBuf::from("gst-launch-1.0"),
            finish_timeout: Duration::from_secs(10),
            max_active: 16,
        }
    }
}

/// What an egress makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EgressKind {
    /// A file of one participant's audio and video.
    Record,
    /// A live HLS stream of one participant (H.264 and AAC), served at `playlist`.
    Hls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EgressState {
    Starting,
    Active,
    Ending,
    Complete,
    Failed,
}

impl EgressState {
    pub fn ended(self) -> bool {
        matches!(self, EgressState::Complete | EgressState::Failed)
    }
}

/// An egress as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EgressView {
    pub id: String,
    pub room: String,
    pub kind: EgressKind,
    /// The participant recorded; `null`: the room's active speaker (see `speaker`).
    pub participant: Option<String>,
    /// Following the active speaker: whom the egress records now, their video and audio
    /// (`null` until the room has a speaker who publishes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
    pub state: EgressState,
    /// Unix seconds.
    pub started_at: u64,
    pub ended_at: Option<u64>,
    /// The file being written (absolute), once the pipeline started; for HLS, the directory
    /// of its playlist and segments.
    pub file: Option<String>,
    /// HLS: the playlist's path on this server (`/hls/{id}/{key}/index.m3u8`), a capability
    /// URL: whoever has it may play, until the egress ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playlist: Option<String>,
    /// The file's size (HLS: the segments on disk).
    pub bytes: u64,
    /// Packets the pipeline could not take in time (dropped, not waited for).
    pub dropped_packets: u64,
    /// Why it ended: `stopped` (`DELETE`), `participant_left`, `room_empty` (following the
    /// speaker, nobody publishes audio or video any more), `server_shutdown`, `error`.
    pub end_reason: Option<String>,
    pub error: Option<String>,
}

/// One egress: its view, and the flag that stops it.
struct Egress {
    tenant: String,
    /// Where `egress_started`/`_updated`/`_ended` go (none in tests without webhooks).
    webhooks: Option<crate::webhooks::Webhooks>,
    /// The runtime the webhooks and room messages are sent on (`announce` also runs on the
    /// worker thread).
    runtime: tokio::runtime::Handle,
    /// The room hears of the egress through it (`ServerMsg::Egress`).
    hub: Weak<Hub>,
    /// HLS: the random part of the playlist's URL.
    key: String,
    /// Its hub session (whose player state names the speaker it follows).
    session: String,
    view: Mutex<EgressView>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    /// True once the egress ended (its file finished, its session closed).
    done: watch::Sender<bool>,
}

impl Egress {
    fn view(&self) -> EgressView {
        let mut v = self.view.lock().unwrap().clone();
        if let Some(f) = &v.file {
            v.bytes = disk_size(std::path::Path::new(f)).unwrap_or(v.bytes);
        }
        v.dropped_packets = self.dropped.load(Ordering::Relaxed);
        if v.participant.is_none() && !v.state.ended() {
            let now = self
                .hub
                .upgrade()
                .and_then(|hub| hub.session(&self.session));
            if let Some(session) = now {
                v.speaker = session.speaker();
                self.set(|stored| stored.speaker = v.speaker.clone());
            }
        }
        v
    }

    /// Tells the room (`ServerMsg::Egress`, so everyone knows they are recorded) and the
    /// tenant's webhook (`event(view)`): a bounded push and a spawned task; never waits.
    fn announce(&self, event: fn(EgressView) -> EventKind) {
        let _runtime = self.runtime.enter();
        let v = self.view();
        if let Some(hub) = self.hub.upgrade() {
            let (tenant, room) = (self.tenant.clone(), v.room.clone());
            let kind = RoomEventKind::Broadcast {
                msg: ServerMsg::Egress { egress: v.clone() },
            };
            crate::request_id::spawn(async move { hub.publish_room(&tenant, &room, kind).await });
        }
        if let Some(w) = &self.webhooks {
            let room = v.room.clone();
            w.emit(&self.tenant, &room, event(v));
        }
    }

    fn set(&self, f: impl FnOnce(&mut EgressView)) {
        f(&mut self.view.lock().unwrap());
    }

    /// Asks it to stop for `reason` (the first reason given wins).
    fn request_stop(&self, reason: &str) {
        self.set(|v| {
            if !v.state.ended() && v.end_reason.is_none() {
                v.end_reason = Some(reason.into());
                v.state = EgressState::Ending;
            }
        });
        self.stop.store(true, Ordering::Relaxed);
    }

    async fn ended(&self) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}

/// The size of a file, or of the files in a directory (an HLS egress's segments).
fn disk_size(path: &std::path::Path) -> Option<u64> {
    let m = std::fs::metadata(path).ok()?;
    if !m.is_dir() {
        return Some(m.len());
    }
    let entries = std::fs::read_dir(path).ok()?;
    Some(
        entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum(),
    )
}

/// Following the active speaker: the room's speaker now (`current`) is the subject if it
/// publishes video, else the first participant with video (else the first with audio);
/// bound are the subject's video (its screen before its camera) and audio (its microphone
/// before its screen's audio).
fn speaker_bind(
    tracks: &[crate::signaling::messages::TrackInfo],
    current: Option<String>,
) -> (Option<String>, Vec<(TrackId, MediaKind)>) {
    let has_video = |who: &String| {
        tracks
            .iter()
            .any(|t| &t.identity == who && t.kind == MediaKind::Video)
    };
    let first_video = tracks.iter().find(|t| t.kind == MediaKind::Video);
    let speaker = current
        .filter(has_video)
        .or_else(|| first_video.map(|t| t.identity.clone()))
        .or_else(|| tracks.first().map(|t| t.identity.clone()));
    let bind = speaker
        .as_ref()
        .map(|who| speaker_tracks(tracks, who))
        .unwrap_or_default();
    (speaker, bind)
}

/// What an egress following `who` plays of `tracks`: `who`'s first video (a screen before a
/// camera) and first audio (a microphone before a screen's audio).
pub(crate) fn speaker_tracks(
    tracks: &[crate::signaling::messages::TrackInfo],
    who: &str,
) -> Vec<(TrackId, MediaKind)> {
    use crate::signaling::messages::TrackSource;
    let mut theirs: Vec<_> = tracks.iter().filter(|t| t.identity == who).collect();
    theirs.sort_by_key(|t| !matches!(t.source, TrackSource::Screen | TrackSource::Microphone));
    [MediaKind::Video, MediaKind::Audio]
        .into_iter()
        .filter_map(|kind| theirs.iter().find(|t| t.kind == kind))
        .filter_map(|t| track_from_wire(&t.id).map(|id| (id, t.kind)))
        .collect()
}

/// A room's egresses on this instance. Cheap to clone.
#[derive(Clone)]
pub struct Egresses {
    /// Weak: the hub holds its `Egresses` (`Hub::set_egresses`).
    hub: Weak<Hub>,
    webhooks: Option<crate::webhooks::Webhooks>,
    settings: Arc<EgressSettings>,
    all: Arc<Mutex<HashMap<String, Arc<Egress>>>>,
    /// Egresses ended since the start: (complete, failed).
    ended: Arc<(AtomicU64, AtomicU64)>,
    /// What `start` is starting now (not yet in `all`), so two requests for the same
    /// egress cannot both start it.
    starting: Arc<Mutex<std::collections::HashSet<Subject>>>,
}

/// What makes two egresses the same: tenant, room, kind and participant (`None`: the
/// active speaker).
type Subject = (String, String, EgressKind, Option<String>);

/// A [`Subject`] being started; released when dropped.
struct Reserved {
    starting: Arc<Mutex<std::collections::HashSet<Subject>>>,
    subject: Subject,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.starting.lock().unwrap().remove(&self.subject);
    }
}

/// What `/metrics` shows of an instance's egresses.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EgressCounts {
    /// Not ended yet, by kind.
    pub recording: u64,
    pub hls: u64,
    /// Ended since the process started.
    pub complete: u64,
    pub failed: u64,
    /// Packets the pipelines of the egresses still listed could not take.
    pub dropped_packets: u64,
}

/// Set once the hub exists (`server::build`); REST handlers read it through `AppState`.
pub type EgressSlot = Arc<OnceLock<Egresses>>;

/// What `POST /v1/rooms/{room}/egress` asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartEgress {
    pub kind: EgressKind,
    /// The identity of the participant to record; omitted: the room's active speaker
    /// (whoever it is at the moment, video and audio).
    #[serde(default)]
    pub participant: Option<String>,
}

fn signal_to_api(e: SignalError) -> ApiError {
    match e.code {
        "room_not_found" => ApiError::room_not_found(e.message),
        "room_full" => ApiError::conflict("room_full", e.message),
        "password_required" | "password_wrong" | "forbidden" => {
            ApiError::conflict("room_closed_to_egress", e.message)
        }
        "store_unavailable" => ApiError::Unavailable(e.message),
        code => ApiError::ServiceUnavailable {
            code: if code == "server_shutdown" {
                "server_shutdown"
            } else {
                "egress_unavailable"
            },
            message: e.message,
        },
    }
}

impl Egresses {
    /// `webhooks`: where egress events go (`None`: nowhere).
    pub fn new(
        hub: Arc<Hub>,
        settings: EgressSettings,
        webhooks: Option<crate::webhooks::Webhooks>,
    ) -> Self {
        Self {
            hub: Arc::downgrade(&hub),
            webhooks,
            settings: Arc::new(settings),
            all: Arc::default(),
            ended: Arc::default(),
            starting: Arc::default(),
        }
    }

    fn hub(&self) -> Result<Arc<Hub>, ApiError> {
        self.hub
            .upgrade()
            .ok_or_else(|| ApiError::ServiceUnavailable {
                code: "server_shutdown",
                message: "the server is stopping".into(),
            })
    }

    pub fn counts(&self) -> EgressCounts {
        let mut c = EgressCounts {
            complete: self.ended.0.load(Ordering::Relaxed),
            failed: self.ended.1.load(Ordering::Relaxed),
            ..EgressCounts::default()
        };
        for e in self.all.lock().unwrap().values() {
            let v = e.view.lock().unwrap();
            if !v.state.ended() {
                match v.kind {
                    EgressKind::Record => c.recording += 1,
                    EgressKind::Hls => c.hls += 1,
                }
            }
            c.dropped_packets += e.dropped.load(Ordering::Relaxed);
        }
        c
    }

    /// Reserves `subject` for a start, or `409 egress_exists` naming the egress that
    /// already makes it (or that one is being started).
    fn reserve(&self, subject: Subject) -> Result<Reserved, ApiError> {
        let (tenant, room, kind, participant) = &subject;
        let all = self.all.lock().unwrap();
        let same = all.values().find(|e| {
            let v = e.view.lock().unwrap();
            &e.tenant == tenant
                && &v.room == room
                && v.kind == *kind
                && &v.participant == participant
                && !v.state.ended()
        });
        if let Some(e) = same {
            return Err(ApiError::conflict(
                "egress_exists",
                format!("egress {} already makes this", e.view.lock().unwrap().id),
            ));
        }
        if !self.starting.lock().unwrap().insert(subject.clone()) {
            return Err(ApiError::conflict(
                "egress_exists",
                "the same egress is being started",
            ));
        }
        drop(all);
        Ok(Reserved {
            starting: self.starting.clone(),
            subject,
        })
    }

    fn count_ended(&self, state: EgressState) {
        let counter = if state == EgressState::Complete {
            &self.ended.0
        } else {
            &self.ended.1
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Asks an egress to stop without waiting for its file (signaling's `stop_egress`).
    pub fn request_stop(&self, tenant: &str, room: &str, id: &str) -> Result<(), ApiError> {
        self.find(tenant, room, id)?.request_stop("stopped");
        Ok(())
    }

    /// The tenant's egresses of `room`, oldest first.
    pub fn list(&self, tenant: &str, room: &str) -> Vec<EgressView> {
        let mut out: Vec<EgressView> = self
            .all
            .lock()
            .unwrap()
            .values()
            .filter(|e| e.tenant == tenant && e.view.lock().unwrap().room == room)
            .map(|e| e.view())
            .collect();
        out.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        out
    }

    fn find(&self, tenant: &str, room: &str, id: &str) -> Result<Arc<Egress>, ApiError> {
        self.all
            .lock()
            .unwrap()
            .get(id)
            .filter(|e| e.tenant == tenant && e.view.lock().unwrap().room == room)
            .cloned()
            .ok_or_else(|| ApiError::NotFound {
                code: "egress_not_found",
                message: format!("no egress {id} in this room"),
            })
    }

    /// The file `name` of live HLS egress `id` if `key` is its playlist's key: what
    /// `GET /hls/{id}/{key}/{name}` serves. `None` for anything else (ended, unknown, wrong
    /// key, a name that is not a playlist or segment).
    pub fn hls_file(&self, id: &str, key: &str, name: &str) -> Option<std::path::PathBuf> {
        let valid = !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && (name.ends_with(".m3u8") || name.ends_with(".ts"));
        let e = self.all.lock().unwrap().get(id).cloned()?;
        let v = e.view.lock().unwrap();
        let open = valid
            && v.kind == EgressKind::Hls
            && !v.state.ended()
            && crate::auth::constant_time_eq(key.as_bytes(), e.key.as_bytes());
        let dir = v.file.as_ref().filter(|_| open)?;
        Some(std::path::Path::new(dir).join(name))
    }

    pub fn get(&self, tenant: &str, room: &str, id: &str) -> Result<EgressView, ApiError> {
        Ok(self.find(tenant, room, id)?.view())
    }

    /// Stops an egress and waits until its file is finished; the final view.
    pub async fn stop(&self, tenant: &str, room: &str, id: &str) -> Result<EgressView, ApiError> {
        let e = self.find(tenant, room, id)?;
        e.request_stop("stopped");
        e.ended().await;
        Ok(e.view())
    }

    /// Stops every egress (the process is stopping) and waits for their files.
    pub async fn stop_all(&self) {
        let all: Vec<Arc<Egress>> = self.all.lock().unwrap().values().cloned().collect();
        for e in &all {
            e.request_stop("server_shutdown");
        }
        for e in &all {
            e.ended().await;
        }
    }

    /// Starts recording `req.participant` of `room`: connects a subscriber to the room's
    /// media node; media and the file follow in the background.
    pub async fn start(
        &self,
        tenant: &str,
        room: &str,
        req: StartEgress,
    ) -> Result<EgressView, ApiError> {
        let active = self
            .all
            .lock()
            .unwrap()
            .values()
            .filter(|e| !e.view.lock().unwrap().state.ended())
            .count();
        if active >= self.settings.max_active {
            return Err(ApiError::ServiceUnavailable {
                code: "egress_unavailable",
                message: format!(
                    "this instance runs its most recordings at once ({})",
                    self.settings.max_active
                ),
            });
        }
        // Held until the egress is in `all` (or its start failed).
        let _reserved = self.reserve((
            tenant.to_string(),
            room.to_string(),
            req.kind,
            req.participant.clone(),
        ))?;
        let hub = self.hub()?;
        let tracks = hub.room_tracks(tenant, room).await.map_err(signal_to_api)?;
        let (bind, plays) = match &req.participant {
            Some(who) => {
                let bind: Vec<_> = tracks
                    .iter()
                    .filter(|t| &t.identity == who)
                    .filter(|t| matches!(t.kind, MediaKind::Audio | MediaKind::Video))
                    .filter_map(|t| track_from_wire(&t.id).map(|id| (id, t.kind)))
                    .collect();
                (bind, Plays::Only(who.clone()))
            }
            None => {
                let (speaker, bind) = speaker_bind(&tracks, hub.speaker_of(tenant, room));
                (bind, Plays::Speaker(speaker))
            }
        };
        if bind.is_empty() {
            return Err(ApiError::conflict(
                "nothing_to_record",
                match &req.participant {
                    Some(who) => format!("{who} publishes no audio or video"),
                    None => "nobody in the room publishes audio or video".into(),
                },
            ));
        }
        let expected = (
            bind.iter().any(|(_, k)| *k == MediaKind::Video),
            bind.iter().any(|(_, k)| *k == MediaKind::Audio),
        );
        let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        let member = Member {
            tenant: tenant.to_string(),
            room: room.to_string(),
            identity: format!("egress-{id}"),
            name: "Recording".into(),
            role: "viewer".into(),
            // room_admin: past a waiting room, as a host's recording would be.
            grants: Grants {
                can_publish: false,
                can_subscribe: true,
                can_chat: false,
                room_admin: true,
            },
            region: None,
            // The tenant asked for it: no room password (as for its REST calls).
            vouched: true,
        };
        let (offered, offer) = receiver::offer(Instant::now());
        let source = std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST);
        let (session, answer, _) = crate::whip::start(
            &hub,
            member,
            source,
            offer,
            PeerRole::Play,
            bind.iter().map(|(id, _)| *id).collect(),
            Some(plays),
        )
        .await
        .map_err(signal_to_api)?;
        let running = match offered.accept(&answer) {
            Ok(r) => r,
            Err(e) => {
                self.close_session(&session).await;
                return Err(ApiError::ServiceUnavailable {
                    code: "egress_unavailable",
                    message: e.to_string(),
                });
            }
        };
        let egress = Arc::new(Egress {
            tenant: tenant.to_string(),
            webhooks: self.webhooks.clone(),
            runtime: tokio::runtime::Handle::current(),
            hub: self.hub.clone(),
            key: uuid::Uuid::new_v4().simple().to_string(),
            session: session.clone(),
            view: Mutex::new(EgressView {
                id: id.clone(),
                room: room.to_string(),
                kind: req.kind,
                participant: req.participant.clone(),
                speaker: None,
                state: EgressState::Starting,
                started_at: now_unix_secs(),
                ended_at: None,
                file: None,
                playlist: None,
                bytes: 0,
                dropped_packets: 0,
                end_reason: None,
                error: None,
            }),
            stop: Arc::new(AtomicBool::new(false)),
            dropped: Arc::new(AtomicU64::new(0)),
            done: watch::channel(false).0,
        });
        self.keep(egress.clone());
        // Before the worker exists: `egress_updated` (from it) never overtakes this.
        egress.announce(|egress| EventKind::EgressStarted { egress });
        let file = self.settings.dir.join(tenant).join(room).join(&id);
        let worker = {
            let (egress, settings) = (egress.clone(), self.settings.clone());
            std::thread::Builder::new()
                .name(format!("egress-{id}"))
                .spawn(move || record::record(running, &egress, &settings, file, expected))
        };
        let worker = match worker {
            Ok(w) => w,
            Err(e) => {
                self.close_session(&session).await;
                egress.set(|v| {
                    v.state = EgressState::Failed;
                    v.error = Some(e.to_string());
                });
                egress.announce(|egress| EventKind::EgressEnded { egress });
                self.count_ended(EgressState::Failed);
                let _ = egress.done.send(true);
                return Ok(egress.view());
            }
        };
        tracing::info!(egress = %id, room, participant = ?req.participant, "egress: started");
        crate::request_id::spawn(self.clone().supervise(egress.clone(), session, worker));
        Ok(egress.view())
    }

    /// Stops the egress when its participant stops publishing; when its worker ends, closes
    /// its session and marks it ended.
    async fn supervise(
        self,
        egress: Arc<Egress>,
        session: String,
        worker: std::thread::JoinHandle<Result<(), String>>,
    ) {
        let (tenant, room, participant) = {
            let v = egress.view.lock().unwrap();
            (egress.tenant.clone(), v.room.clone(), v.participant.clone())
        };
        let mut missing = 0;
        while !worker.is_finished() {
            tokio::time::sleep(PRESENCE_EVERY).await;
            if egress.stop.load(Ordering::Relaxed) {
                continue;
            }
            // Gone twice in a row (a store blip counts as present).
            let Ok(hub) = self.hub() else { break };
            let present = match hub.room_tracks(&tenant, &room).await {
                Ok(tracks) => tracks
                    .iter()
                    .any(|t| participant.as_ref().is_none_or(|p| &t.identity == p)),
                Err(_) => true,
            };
            missing = if present { 0 } else { missing + 1 };
            if missing >= 2 {
                egress.request_stop(if participant.is_some() {
                    "participant_left"
                } else {
                    "room_empty"
                });
            }
        }
        let result = tokio::task::spawn_blocking(move || worker.join())
            .await
            .map_err(|e| e.to_string())
            .and_then(|joined| joined.map_err(|_| "the egress worker panicked".to_string()))
            .and_then(|r| r);
        self.close_session(&session).await;
        egress.set(|v| {
            v.ended_at = Some(now_unix_secs());
            match result {
                Ok(()) => v.state = EgressState::Complete,
                Err(e) => {
                    v.state = EgressState::Failed;
                    v.end_reason.get_or_insert_with(|| "error".into());
                    v.error = Some(e);
                }
            }
        });
        egress.announce(|egress| EventKind::EgressEnded { egress });
        let v = egress.view();
        self.count_ended(v.state);
        tracing::info!(egress = %v.id, state = ?v.state, bytes = v.bytes, file = ?v.file, error = ?v.error, "egress: ended");
        let _ = egress.done.send(true);
    }

    async fn close_session(&self, id: &str) {
        let Ok(hub) = self.hub() else { return };
        if let Some(s) = hub.session(id) {
            hub.close(&s, None).await;
        }
    }

    /// Adds `e`, forgetting the oldest ended egresses past [`KEEP_ENDED`].
    fn keep(&self, e: Arc<Egress>) {
        let mut all = self.all.lock().unwrap();
        let id = e.view.lock().unwrap().id.clone();
        all.insert(id, e);
        let mut ended: Vec<(u64, String)> = all
            .iter()
            .filter_map(|(id, e)| {
                let v = e.view.lock().unwrap();
                v.state
                    .ended()
                    .then(|| (v.ended_at.unwrap_or(0), id.clone()))
            })
            .collect();
        if ended.len() > KEEP_ENDED {
            ended.sort();
            for (_, id) in &ended[..ended.len() - KEEP_ENDED] {
                all.remove(id);
            }
        }
    }
}
