//! An egress's media pipeline: GStreamer's `gst-launch-1.0` as a child process. Each stream
//! (video, audio) reaches it as RTP over its own loopback TCP connection in RFC 4571 framing
//! (`tcpclientsrc` → `rtpstreamdepay`), is reordered (`rtpjitterbuffer`), depayloaded and
//! muxed into one file: WebM for VP8/VP9 (and Opus), MP4 for H.264 (its index written at
//! the end, when the streams end); or, for HLS, transcoded where needed into `hlssink2`.
//!
//! We listen, GStreamer connects: no port is guessed, and the connections are the child's
//! end of file. Closing them (a stop, or this process dying) is an EOS on every source; the
//! muxer then writes its index and the child exits, so a recording is finished however it
//! ends. A writer thread owns the connections: the receiver hands it packets through a
//! bounded queue and drops (and counts) what does not fit rather than wait.
//!
//! Must never: write a container ourselves, or block the receiver on the child.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shardcast_dataplane::node::MediaKind;
use str0m::format::Codec;

use super::receiver::Packet;

/// The SSRCs the pipeline's RTP carries (one stream per connection; any fixed value works).
const VIDEO_SSRC: u32 = 1;
const AUDIO_SSRC: u32 = 2;
/// Packets queued for the writer at most (≈ 4 s of a 2 Mbit/s call).
const QUEUE: usize = 2048;
/// How long the child may take to connect once started.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What one recording holds: the codec of each stream it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub video: Option<Codec>,
    pub audio: Option<Codec>,
}

/// The file format a layout is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Webm,
    Mp4,
}

impl Container {
    pub fn extension(self) -> &'static str {
        match self {
            Container::Webm => "webm",
            Container::Mp4 => "mp4",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("nothing to record: no audio or video arrived")]
    Empty,
    #[error("{0} cannot be recorded")]
    Codec(String),
    #[error("starting {program}: {error}")]
    Spawn {
        program: String,
        error: std::io::Error,
    },
    #[error("the pipeline did not connect: {0}")]
    Connect(String),
    #[error("the pipeline failed: {0}")]
    Failed(String),
}

impl Layout {
    /// WebM for VP8/VP9 and audio alone, MP4 for H.264.
    pub fn container(&self) -> Result<Container, PipelineError> {
        if let Some(a) = self.audio.filter(|c| *c != Codec::Opus) {
            return Err(PipelineError::Codec(format!("audio {a}")));
        }
        match self.video {
            None if self.audio.is_none() => Err(PipelineError::Empty),
            None | Some(Codec::Vp8) | Some(Codec::Vp9) => Ok(Container::Webm),
            Some(Codec::H264) => Ok(Container::Mp4),
            Some(other) => Err(PipelineError::Codec(format!("video {other}"))),
        }
    }
}

/// What a pipeline writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One file, in the layout's container.
    File(std::path::PathBuf),
    /// A live HLS stream in a directory: `index.m3u8` and MPEG-TS segments of
    /// [`HLS_SEGMENT_SECS`], the last [`HLS_KEEP`] kept. Video is H.264 (VP8 and VP9 are
    /// transcoded, H.264 is passed through), audio AAC (transcoded from Opus).
    Hls(std::path::PathBuf),
}

/// An HLS segment's target length.
pub const HLS_SEGMENT_SECS: u32 = 2;
/// Segments in the playlist, and on disk (a player that fell further behind starts over).
const HLS_LIST: u32 = 6;
const HLS_KEEP: u32 = 10;

/// One stream's branch: from its TCP source through the depayloader (and, for HLS, the
/// transcoder) to the muxer's pad.
fn branch(kind: MediaKind, codec: Codec, port: u16, hls: bool) -> Vec<String> {
    let (media, rate, name, depay): (&str, u32, &str, &[&str]) = match (kind, codec) {
        (MediaKind::Audio, _) if hls => (
            "audio",
            48_000,
            "OPUS",
            &[
                "rtpopusdepay",
                "!",
                "opusdec",
                "!",
                "audioconvert",
                "!",
                "audioresample",
                "!",
                "voaacenc",
                "!",
                "aacparse",
            ],
        ),
        (MediaKind::Audio, _) => ("audio", 48_000, "OPUS", &["rtpopusdepay", "!", "opusparse"]),
        (_, Codec::Vp9) if hls => ("video", 90_000, "VP9", &["rtpvp9depay", "!", "vp9dec"]),
        (_, Codec::Vp9) => ("video", 90_000, "VP9", &["rtpvp9depay"]),
        // Parameter sets before every keyframe: each segment must decode on its own.
        (_, Codec::H264) if hls => (
            "video",
            90_000,
            "H264",
            &["rtph264depay", "!", "h264parse", "config-interval=-1"],
        ),
        // avc3: parameter sets in the stream, so a switch of simulcast layer (a new size, new
        // SPS/PPS) mid-file is not a caps change the MP4 muxer cannot take.
        (_, Codec::H264) => (
            "video",
            90_000,
            "H264",
            &[
                "rtph264depay",
                "!",
                "h264parse",
                "!",
                "video/x-h264,stream-format=avc3,alignment=au",
            ],
        ),
        _ if hls => ("video", 90_000, "VP8", &["rtpvp8depay", "!", "vp8dec"]),
        _ => ("video", 90_000, "VP8", &["rtpvp8depay"]),
    };
    let mut b: Vec<String> = vec![
        "tcpclientsrc".into(),
        "host=127.0.0.1".into(),
        format!("port={port}"),
        "do-timestamp=true".into(),
        "!".into(),
        format!(
            "application/x-rtp-stream,media={media},clock-rate={rate},encoding-name={name},payload={}",
            pt_of(kind)
        ),
        "!".into(),
        "rtpstreamdepay".into(),
        "!".into(),
        "rtpjitterbuffer".into(),
        "latency=500".into(),
        "!".into(),
    ];
    b.extend(depay.iter().map(|s| s.to_string()));
    if hls && kind == MediaKind::Video && codec != Codec::H264 {
        // A keyframe per segment, so each segment starts one.
        let gop = 30 * HLS_SEGMENT_SECS;
        b.extend(["!", "videoconvert", "!", "openh264enc"].map(String::from));
        b.push(format!("gop-size={gop}"));
        b.extend(["!", "h264parse"].map(String::from));
    }
    let pad = match (hls, kind) {
        (false, _) => "mux.",
        (true, MediaKind::Video) => "mux.video",
        (true, MediaKind::Audio) => "mux.audio",
    };
    b.extend(["!", "queue", "!", pad].map(String::from));
    b
}

/// `gst-launch-1.0`'s arguments for `layout` into `target`, reading video from `ports.0` and
/// audio from `ports.1`.
pub fn launch_args(
    layout: Layout,
    ports: (u16, u16),
    target: &Target,
) -> Result<Vec<String>, PipelineError> {
    let container = layout.container()?;
    let mut args: Vec<String> = vec!["-q".into(), "-e".into()];
    let hls = match target {
        Target::File(file) => {
            match container {
                Container::Webm => args.extend(["webmmux", "name=mux"].map(String::from)),
                // Not fragmented: the index goes at the end, written at EOS, with a sample
                // description per codec configuration the stream had. (Fragmented, mp4mux
                // rewrote its header over the first fragment when the H.264 parameter sets
                // changed mid-file: an unreadable file about half the time.)
                Container::Mp4 => args.extend(["mp4mux", "name=mux"].map(String::from)),
            }
            args.extend(["!", "filesink"].map(String::from));
            args.push(format!("location={}", file.display()));
            false
        }
        Target::Hls(dir) => {
            args.extend(["hlssink2", "name=mux"].map(String::from));
            args.push(format!("location={}", dir.join("segment%05d.ts").display()));
            args.push(format!(
                "playlist-location={}",
                dir.join("index.m3u8").display()
            ));
            args.push(format!("target-duration={HLS_SEGMENT_SECS}"));
            args.push(format!("playlist-length={HLS_LIST}"));
            args.push(format!("max-files={HLS_KEEP}"));
            true
        }
    };
    if let Some(codec) = layout.video {
        args.extend(branch(MediaKind::Video, codec, ports.0, hls));
    }
    if let Some(codec) = layout.audio {
        args.extend(branch(MediaKind::Audio, codec, ports.1, hls));
    }
    Ok(args)
}

/// A running pipeline.
pub struct Pipeline {
    tx: Option<SyncSender<(MediaKind, Vec<u8>)>>,
    writer: Option<JoinHandle<()>>,
    child: Child,
    /// The child's last lines of output (its errors), for `finish`'s error.
    stderr_tail: Arc<Mutex<Vec<String>>>,
    dropped: Arc<AtomicU64>,
    layout: Layout,
}

impl Pipeline {
    /// Starts `program` (gst-launch-1.0) for `layout` writing `target`; returns once the
    /// child runs (it connects in the background). `dropped` counts the packets `push` could
    /// not queue.
    pub fn start(
        program: &Path,
        layout: Layout,
        target: &Target,
        dropped: Arc<AtomicU64>,
    ) -> Result<Self, PipelineError> {
        let listen = |want: bool| -> Result<Option<TcpListener>, PipelineError> {
            if !want {
                return Ok(None);
            }
            TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                .map(Some)
                .map_err(|e| PipelineError::Connect(e.to_string()))
        };
        let video = listen(layout.video.is_some())?;
        let audio = listen(layout.audio.is_some())?;
        let port = |l: &Option<TcpListener>| {
            l.as_ref()
                .and_then(|l| l.local_addr().ok())
                .map_or(0, |a| a.port())
        };
        let args = launch_args(layout, (port(&video), port(&audio)), target)?;
        tracing::debug!(?args, "egress: starting the pipeline");
        // A process group of its own: a signal to ours (Ctrl-C in a terminal, a supervisor
        // that signals the group) must not kill it before we end its streams; if we die,
        // its connections close and it finishes the file by itself.
        let mut child = Command::new(program)
            .args(&args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| PipelineError::Spawn {
                program: program.display().to_string(),
                error,
            })?;
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        if let Some(err) = child.stderr.take() {
            let tail = stderr_tail.clone();
            let _ = std::thread::Builder::new()
                .name("egress-stderr".into())
                .spawn(move || log_stderr(err, &tail));
        }
        let (tx, rx) = sync_channel(QUEUE);
        let writer = std::thread::Builder::new()
            .name("egress-writer".into())
            .spawn(move || write_loop(video, audio, rx))
            .map_err(|e| PipelineError::Connect(e.to_string()))?;
        Ok(Self {
            tx: Some(tx),
            writer: Some(writer),
            child,
            stderr_tail,
            dropped,
            layout,
        })
    }

    /// Queues `p` as an RTP packet of its stream; false when the stream is not recorded or
    /// the queue is full (the packet is dropped and counted).
    pub fn push(&self, p: &Packet) -> bool {
        let (wanted, ssrc) = match p.kind {
            MediaKind::Video => (self.layout.video == Some(p.codec), VIDEO_SSRC),
            MediaKind::Audio => (self.layout.audio == Some(p.codec), AUDIO_SSRC),
        };
        let Some(tx) = self.tx.as_ref().filter(|_| wanted) else {
            return false;
        };
        match tx.try_send((p.kind, frame(p, ssrc))) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The child's error if it exited already (a pipeline that cannot run).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(self.stderr(status)),
            _ => None,
        }
    }

    /// Ends the streams (EOS), waits up to `timeout` for the child to finish the file, then
    /// kills it. Ok when it exited by itself with status 0.
    pub fn finish(mut self, timeout: Duration) -> Result<(), PipelineError> {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(PipelineError::Failed(self.stderr(status))),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(PipelineError::Failed(format!(
                        "did not finish within {} s; killed",
                        timeout.as_secs()
                    )));
                }
            }
        }
    }

    /// What a failed child's exit tells the API: its status (its output, which may name
    /// files and hosts, goes to the server log only).
    fn stderr(&mut self, status: std::process::ExitStatus) -> String {
        // The reader thread sees the pipe close as the child exits; give it a moment.
        std::thread::sleep(Duration::from_millis(50));
        let tail = self.stderr_tail.lock().unwrap().join(" | ");
        tracing::warn!(%status, output = %tail, "egress: gst-launch failed");
        format!("gst-launch {status} (its output is in the server log)")
    }
}

/// Logs the child's output, a line at a time, keeping the last few for errors.
fn log_stderr(err: std::process::ChildStderr, tail: &Mutex<Vec<String>>) {
    use std::io::BufRead;
    for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        tracing::info!(target: "shardcast_controlplane::egress", "gst-launch: {line}");
        let mut t = tail.lock().unwrap();
        if t.len() == 4 {
            t.remove(0);
        }
        t.push(line);
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Not finished (an error path): the streams end here, the child finishes its file
        // by itself; it is reaped if it already exited.
        drop(self.tx.take());
        let _ = self.child.try_wait();
    }
}

/// `p` as an RTP packet (no extensions) behind its RFC 4571 length.
fn frame(p: &Packet, ssrc: u32) -> Vec<u8> {
    let len = 12 + p.payload.len();
    let mut b = Vec::with_capacity(2 + len);
    b.extend_from_slice(&(len as u16).to_be_bytes());
    b.push(0x80);
    b.push(u8::from(p.marker) << 7 | pt_of(p.kind));
    b.extend_from_slice(&p.seq.to_be_bytes());
    b.extend_from_slice(&p.timestamp.to_be_bytes());
    b.extend_from_slice(&ssrc.to_be_bytes());
    b.extend_from_slice(&p.payload);
    b
}

/// The payload type the pipeline's RTP uses (its caps name the codec; any dynamic pt works).
fn pt_of(kind: MediaKind) -> u8 {
    match kind {
        MediaKind::Video => 96,
        MediaKind::Audio => 111,
    }
}

/// Accepts the child's connections, then writes each queued packet to its stream's until
/// the queue's sender is dropped; the connections close as it returns (the child's EOS).
fn write_loop(
    video: Option<TcpListener>,
    audio: Option<TcpListener>,
    rx: Receiver<(MediaKind, Vec<u8>)>,
) {
    let accept = |l: Option<TcpListener>| -> Option<TcpStream> {
        let l = l?;
        l.set_nonblocking(true).ok()?;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        while Instant::now() < deadline {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).ok()?;
                    let _ = s.set_nodelay(true);
                    return Some(s);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => return None,
            }
        }
        tracing::warn!("egress: the pipeline did not connect");
        None
    };
    let mut video = accept(video);
    let mut audio = accept(audio);
    for (kind, bytes) in rx {
        let stream = match kind {
            MediaKind::Video => &mut video,
            MediaKind::Audio => &mut audio,
        };
        if let Some(s) = stream {
            if s.write_all(&bytes).is_err() {
                // The child closed its end (it failed); `finish` reports its status.
                *stream = None;
            }
        }
    }
    for s in [video, audio].into_iter().flatten() {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_choose_the_container() {
        let l = |video, audio| Layout { video, audio };
        assert_eq!(
            l(Some(Codec::Vp8), Some(Codec::Opus)).container().unwrap(),
            Container::Webm
        );
        assert_eq!(
            l(Some(Codec::Vp9), None).container().unwrap(),
            Container::Webm
        );
        assert_eq!(
            l(None, Some(Codec::Opus)).container().unwrap(),
            Container::Webm
        );
        assert_eq!(
            l(Some(Codec::H264), Some(Codec::Opus)).container().unwrap(),
            Container::Mp4
        );
        assert!(matches!(
            l(None, None).container(),
            Err(PipelineError::Empty)
        ));
        assert!(matches!(
            l(Some(Codec::Av1), None).container(),
            Err(PipelineError::Codec(_))
        ));
    }

    #[test]
    fn a_frame_is_a_length_then_an_rtp_header_then_the_payload() {
        let p = Packet {
            kind: MediaKind::Video,
            codec: Codec::Vp8,
            marker: true,
            seq: 0x1234,
            timestamp: 0xdead_beef,
            payload: Arc::from(&[7u8, 8, 9][..]),
        };
        let f = frame(&p, 1);
        assert_eq!(&f[..2], &[0, 15]);
        assert_eq!(f[2], 0x80);
        assert_eq!(f[3], 0x80 | 96);
        assert_eq!(&f[4..6], &[0x12, 0x34]);
        assert_eq!(&f[6..10], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&f[10..14], &[0, 0, 0, 1]);
        assert_eq!(&f[14..], &[7, 8, 9]);
    }

    #[test]
    fn the_launch_line_has_one_branch_per_stream() {
        let layout = Layout {
            video: Some(Codec::Vp8),
            audio: Some(Codec::Opus),
        };
        let target = Target::File("/r/x.webm".into());
        let args = launch_args(layout, (4000, 4001), &target).unwrap();
        let line = args.join(" ");
        assert!(line.starts_with("-q -e webmmux name=mux ! filesink location=/r/x.webm"));
        assert!(line.contains("port=4000 do-timestamp=true ! application/x-rtp-stream,media=video,clock-rate=90000,encoding-name=VP8,payload=96"));
        assert!(line.contains("port=4001 do-timestamp=true ! application/x-rtp-stream,media=audio,clock-rate=48000,encoding-name=OPUS,payload=111"));
        assert_eq!(line.matches("mux.").count(), 2);
    }

    #[test]
    fn hls_transcodes_vp8_and_opus_and_passes_h264_through() {
        let hls = Target::Hls("/r/e1".into());
        let vp8 = Layout {
            video: Some(Codec::Vp8),
            audio: Some(Codec::Opus),
        };
        let line = launch_args(vp8, (4000, 4001), &hls).unwrap().join(" ");
        assert!(line.starts_with("-q -e hlssink2 name=mux location=/r/e1/segment%05d.ts playlist-location=/r/e1/index.m3u8 target-duration=2"), "{line}");
        assert!(line.contains("rtpvp8depay ! vp8dec ! videoconvert ! openh264enc gop-size=60 ! h264parse ! queue ! mux.video"), "{line}");
        assert!(
            line.contains(
                "opusdec ! audioconvert ! audioresample ! voaacenc ! aacparse ! queue ! mux.audio"
            ),
            "{line}"
        );
        let h264 = Layout {
            video: Some(Codec::H264),
            audio: None,
        };
        let line = launch_args(h264, (4000, 4001), &hls).unwrap().join(" ");
        assert!(
            line.contains("rtph264depay ! h264parse config-interval=-1 ! queue ! mux.video"),
            "{line}"
        );
        assert!(!line.contains("openh264enc"), "{line}");
    }
}
