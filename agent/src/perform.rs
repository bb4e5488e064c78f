//! The I/O half of the lifecycle, shared by the agent's driver, the fleet simulator and the
//! fault tests: one network [`Action`] (check, download, log upload) plus what the device
//! brings to it (a [`Context`]) becomes one future that yields the completion [`Event`] the
//! machine expects, and [`InFlight`] tracks which kinds of work are out and which start of
//! each is the current one, so a superseded answer is never fed to the machine.
//!
//! The callers add only what differs between them: the driver spawns tokio tasks and aborts a
//! superseded one, the simulator stamps answers with virtual time, shapes links and counts
//! metrics, the fault tests await inline. Resolve and install stay theirs (the simulator answers
//! DNS virtually, the driver runs a hook) but go through the same [`InFlight`] tracking.
//! Results become events through [`crate::bridge`].

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use ucupdate_protocol::{
    CheckRequest, DeviceIdentity, FileName, FirmwareVersion, HttpUrl, InstalledModule, LogType,
    LogUpload, OfferedFile, PathSegment,
};

use crate::bridge;
use crate::machine::{Action, CatalogVerdict, DownloadFailure, Event, FailureClass};
use crate::net::{self, Client, Credentials, DownloadSink, NetError, RequestStats};

/// The kinds of work the machine asks for that an event answers, one of each at most in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Resolve,
    Check,
    Download,
    Install,
    UploadLog,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Resolve,
        Kind::Check,
        Kind::Download,
        Kind::Install,
        Kind::UploadLog,
    ];

    /// The kinds that go over the network and so take wall time (the rest a caller may model).
    pub const NETWORK: [Kind; 3] = [Kind::Check, Kind::Download, Kind::UploadLog];

    /// The kind of work `action` starts; `None` for what nothing answers (persist, reboot).
    pub const fn of(action: &Action) -> Option<Kind> {
        match action {
            Action::Resolve { .. } => Some(Kind::Resolve),
            Action::Check { .. } => Some(Kind::Check),
            Action::Download { .. } => Some(Kind::Download),
            Action::Install { .. } => Some(Kind::Install),
            Action::UploadLog { .. } => Some(Kind::UploadLog),
            Action::Persist(_) | Action::Reboot => None,
        }
    }

    /// The same names as [`Action::name`].
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Resolve => "resolve",
            Kind::Check => "check",
            Kind::Download => "download",
            Kind::Install => "install",
            Kind::UploadLog => "upload-log",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Which start of a kind of work an answer belongs to: hand it back to [`InFlight::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    kind: Kind,
    generation: u8,
}

impl Ticket {
    pub const fn kind(self) -> Kind {
        self.kind
    }
}

/// The kinds of work in flight and the generation of each kind's current start. Six bytes,
/// because the simulator keeps one per virtual device.
///
/// A generation is a `u8` per kind: an answer is mistaken for the current one only if the same
/// kind was restarted a multiple of 256 times while it was out, which no caller does (the driver
/// aborts a superseded task, the simulator holds the machine's timers while a request is out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InFlight {
    busy: u8,
    generations: [u8; Kind::ALL.len()],
}

impl InFlight {
    pub const fn new() -> InFlight {
        InFlight {
            busy: 0,
            generations: [0; Kind::ALL.len()],
        }
    }

    /// Starts a `kind` of work. An earlier start of the same kind still out is superseded: its
    /// answer will not [`finish`](Self::finish).
    pub fn start(&mut self, kind: Kind) -> Ticket {
        let g = &mut self.generations[kind.index()];
        *g = g.wrapping_add(1);
        self.busy |= kind.bit();
        Ticket {
            kind,
            generation: *g,
        }
    }

    /// An answer arrived: `true` (and its kind is no longer in flight) when it answers the
    /// current start of its kind, `false` when it was superseded or cancelled.
    pub fn finish(&mut self, ticket: Ticket) -> bool {
        let current =
            self.is_busy(ticket.kind) && self.generations[ticket.kind.index()] == ticket.generation;
        if current {
            self.busy &= !ticket.kind.bit();
        }
        current
    }

    pub const fn is_busy(&self, kind: Kind) -> bool {
        self.busy & kind.bit() != 0
    }

    /// Whether any network request (check, download, log upload) is out.
    pub fn awaiting_network(&self) -> bool {
        Kind::NETWORK.iter().any(|&k| self.is_busy(k))
    }

    /// Forgets everything in flight (the device lost power): every ticket out becomes stale.
    pub fn cancel_all(&mut self) {
        for kind in Kind::ALL {
            if self.is_busy(kind) {
                let g = &mut self.generations[kind.index()];
                *g = g.wrapping_add(1);
            }
        }
        self.busy = 0;
    }
}

/// What a device brings to its network actions. The driver implements it over the firmware and
/// its state directory, the simulator over an identity derived from the seed, the fault tests
/// over a fixture.
pub trait Context {
    /// The client for this request: already routed (the driver's discovered addresses) or
    /// shaped (the simulator's link).
    fn client(&self) -> Client;
    fn identity(&self) -> DeviceIdentity;
    /// The installed module a check reports at `version`.
    fn module(&self, version: FirmwareVersion) -> InstalledModule;
    /// The signed-in user's credentials. Sent only on external requests: internal ones are
    /// anonymous.
    fn credentials(&self) -> Option<Credentials>;
    /// A lab override (`[trust] allow_plain_http_credentials`): credentials may also go over
    /// plain HTTP. Off by default: an NTLM Type 3 in clear lets anyone on the path crack the
    /// password offline.
    fn plain_http_credentials(&self) -> bool {
        false
    }
    /// The total deadline of one file download (connect to last byte); `None`: only the
    /// client's per-phase timeouts. A body that trickles forever is cut here.
    fn download_deadline(&self) -> Option<Duration> {
        None
    }
    /// Where a download of `file` of `version` goes; `None` counts and hashes only.
    fn staging(&self, version: FirmwareVersion, file: &FileName) -> Option<PathBuf>;
    /// The logs an upload sends (asked for only when the machine wants an upload).
    fn logs(&self) -> Vec<Log>;
    /// How this device verifies the catalogs it downloads. By default it has no anchors, so
    /// every catalog, and so every update, is refused.
    fn catalog_check(&self) -> CatalogCheck {
        CatalogCheck::NoAnchors
    }
    /// The wire dialect checks are sent in; `None`: the built-in one (`ucupdate`).
    fn dialect(&self) -> Option<std::sync::Arc<ucupdate_protocol::dialect::Dialect>> {
        None
    }
    /// The device's idea of the time, for a `[trust] trusted_clock` (seconds since the epoch).
    fn now_unix_secs(&self) -> u64 {
        crate::clock::unix_millis() / 1000
    }
}

/// One device log for an upload.
#[derive(Debug, Clone)]
pub struct Log {
    pub log_type: LogType,
    /// The file name the server stores it under (in the device's folder).
    pub name: FileName,
    pub contents: LogContents,
}

#[derive(Debug, Clone)]
pub enum LogContents {
    /// Read at upload time; a missing file is skipped.
    File(PathBuf),
    Bytes(Bytes),
}

/// What a finished network call produced.
#[derive(Debug)]
pub struct Done {
    /// The completion event for the machine.
    pub event: Event,
    /// Of the call (for a log upload of several files, of the last one).
    pub stats: RequestStats,
    /// The failure, for logs and metrics; its class is already in `event`.
    pub error: Option<NetError>,
}

/// A network call, ready to be awaited (inline, or in a spawned task).
pub type Call = Pin<Box<dyn Future<Output = Done> + Send + 'static>>;

/// What [`start`] made of an action.
pub enum Work {
    /// A network call of `kind`: await `call` for its completion.
    Request { kind: Kind, call: Call },
    /// Not network work: persist, resolve, install, reboot are the caller's.
    Local(Action),
}

/// Turns a network action into its call; gives every other action back.
pub fn start(action: Action, ctx: &impl Context) -> Work {
    match action {
        Action::Check {
            url,
            external,
            user,
            current_version,
        } => {
            let request = CheckRequest {
                identity: ctx.identity(),
                modules: vec![ctx.module(current_version)],
                user,
            };
            let client = ctx.client();
            let auth = credentials(ctx, external, &url);
            let dialect = ctx.dialect();
            let call = async move {
                let (result, stats) = net::check_in_dialect_with_stats(
                    &client,
                    &url,
                    &request,
                    dialect.as_deref(),
                    auth.as_ref(),
                )
                .await;
                tracing::debug!(?stats, "check call");
                let (event, error) = bridge::check_event(result);
                Done {
                    event,
                    stats,
                    error,
                }
            };
            Work::Request {
                kind: Kind::Check,
                call: Box::pin(call),
            }
        }
        Action::Download {
            url,
            version,
            file,
            resume_from,
            external,
            catalog_for,
            expect_sha1,
        } => {
            let dest = ctx.staging(version, &file.file_name);
            let client = ctx.client();
            let auth = credentials(ctx, external, &url);
            let deadline = ctx.download_deadline();
            let catalog =
                catalog_for.map(|image| (image, ctx.catalog_check(), ctx.now_unix_secs()));
            let call = async move {
                // Boxed: awaited on two paths, the (large) download future is compiled once.
                let fetch: Pin<Box<dyn Future<Output = _> + Send + '_>> = Box::pin(download(
                    &client,
                    &url,
                    &file,
                    dest.clone(),
                    resume_from,
                    auth.as_ref(),
                    catalog.is_some(),
                ));
                let (result, stats) = match deadline {
                    None => fetch.await,
                    Some(limit) => match tokio::time::timeout(limit, fetch).await {
                        Ok(done) => done,
                        Err(_) => (Err(past_deadline(dest.clone())), RequestStats::default()),
                    },
                };
                tracing::debug!(?stats, "download call");
                if let Ok(done) = &result {
                    let (size, resumed_from) = (done.size, done.resumed_from);
                    tracing::debug!(file = %file.file_name, size, resumed_from, "downloaded and verified");
                }
                let verdict = match (&result, catalog) {
                    (Ok(done), Some((image, check, now))) => {
                        verify::catalog(check, done, dest.clone(), &image, now).await
                    }
                    _ => CatalogVerdict::NotChecked,
                };
                let (mut event, error) = bridge::download_event(&file.file_name, result);
                if let Event::DownloadDone(Ok(done)) = &mut event {
                    done.catalog = verdict;
                    if let Some(want) = expect_sha1 {
                        if !verify::sha1_matches(dest, want).await {
                            event = Event::DownloadDone(Err(DownloadFailure {
                                class: FailureClass::HashMismatch,
                                bytes_kept: 0,
                            }));
                        }
                    }
                }
                Done {
                    event,
                    stats,
                    error,
                }
            };
            Work::Request {
                kind: Kind::Download,
                call: Box::pin(call),
            }
        }
        Action::UploadLog { url, external } => {
            let client = ctx.client();
            let auth = credentials(ctx, external, &url);
            let folder = device_segment(&ctx.identity());
            let logs = ctx.logs();
            let call = async move {
                let (result, stats) = upload_logs(&client, &url, logs, folder, auth.as_ref()).await;
                let (event, error) = bridge::log_event(result);
                Done {
                    event,
                    stats,
                    error,
                }
            };
            Work::Request {
                kind: Kind::UploadLog,
                call: Box::pin(call),
            }
        }
        other => Work::Local(other),
    }
}

fn credentials(ctx: &impl Context, external: bool, url: &HttpUrl) -> Option<Credentials> {
    // Internal requests are anonymous; only the external path authenticates, and only over
    // HTTPS (the configuration refuses an `http://` external URL; a provisioned one may be).
    if !external {
        return None;
    }
    if !url.https && !ctx.plain_http_credentials() {
        tracing::warn!(%url, "not sending credentials over plain HTTP");
        return None;
    }
    ctx.credentials()
}

/// The MAC (canonical) or serial number that names the device's log folder on the server.
pub fn device_segment(identity: &DeviceIdentity) -> Option<PathSegment> {
    let text = identity
        .mac
        .map(|m| m.to_string())
        .or_else(|| identity.serial.as_ref().map(|s| s.as_str().to_owned()))?;
    PathSegment::new(&text).ok()
}

async fn download(
    client: &Client,
    url: &HttpUrl,
    file: &OfferedFile,
    dest: Option<PathBuf>,
    resume_from: u64,
    auth: Option<&Credentials>,
    keep_in_memory: bool,
) -> (Result<net::DownloadedFile, NetError>, RequestStats) {
    if let Some(path) = dest.clone() {
        let size = file.size;
        let prepared = tokio::task::spawn_blocking(move || prepare_staging(&path, size)).await;
        let prepared = prepared.unwrap_or_else(|e| Err(NetError::Config(e.to_string())));
        if let Err(error) = prepared {
            return (Err(error), RequestStats::default());
        }
    }
    let sink = match &dest {
        Some(path) => DownloadSink::File(path),
        None if keep_in_memory => DownloadSink::Memory,
        None => DownloadSink::Discard,
    };
    net::download_to(client, url, file, sink, resume_from, auth).await
}

/// The file work before a download, in one blocking call: `staging/<version>` is created
/// (0700) and must be a real directory (the download opens its file with `O_NOFOLLOW`, which
/// guards only the last path component); then a file the staging file system cannot hold is
/// refused before the first byte (`statvfs`), since a full flash also stops the state file
/// from being written. Bytes already there (a resume) count as room.
fn prepare_staging(dest: &std::path::Path, size: Option<u64>) -> Result<(), NetError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = dest.parent().unwrap_or(dest);
    let io = |op| NetError::io(op, dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create staging dir"))?;
    if !std::fs::symlink_metadata(dir).map_err(io("stat"))?.is_dir() {
        return Err(io("create staging dir")(std::io::Error::other(
            "not a directory (a symlink?)",
        )));
    }
    let Some(size) = size else { return Ok(()) };
    let on_disk = std::fs::metadata(dest).map_or(0, |m| m.len());
    let needed = size.saturating_sub(on_disk);
    let stat = rustix::fs::statvfs(dir).map_err(|e| io("statvfs")(e.into()))?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if needed > free {
        let full = std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("{needed} bytes needed, {free} free"),
        );
        return Err(io("free space")(full));
    }
    Ok(())
}

/// A download cut by its total deadline: the bytes on disk are kept for a resume, as after
/// any other cut (their SHA-256 is checked again when the file completes).
fn past_deadline(dest: Option<PathBuf>) -> NetError {
    // One stat, on the task: not worth a blocking-pool round trip (nor its code on a device).
    let on_disk = dest
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    NetError::Partial {
        on_disk,
        cause: Box::new(NetError::Timeout {
            phase: net::TimeoutPhase::Total,
        }),
    }
}

/// Uploads each log (its last `MAX_LOG_BYTES`) to the check handler, in order; the first
/// failure ends the upload.
async fn upload_logs(
    client: &Client,
    url: &HttpUrl,
    logs: Vec<Log>,
    folder: Option<PathSegment>,
    auth: Option<&Credentials>,
) -> (Result<(), NetError>, RequestStats) {
    let mut stats = RequestStats::default();
    let Some(folder) = folder else {
        tracing::warn!("no MAC or serial number: logs cannot be named on the server");
        return (Ok(()), stats);
    };
    for log in logs {
        let upload = match LogUpload::new(log.log_type, log.name.clone(), folder.clone()) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(name = %log.name, error = %e, "log not uploadable");
                continue;
            }
        };
        let bytes = match log.contents {
            LogContents::Bytes(b) => b,
            LogContents::File(path) => match tokio::fs::read(&path).await {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "log missing");
                    continue;
                }
            },
        };
        // The server refuses larger files; its tail is the part worth reading.
        let max = usize::try_from(ucupdate_protocol::wire::MAX_LOG_BYTES).unwrap_or(usize::MAX);
        let contents = bytes.slice(bytes.len().saturating_sub(max)..);
        let (result, call) = net::upload_log_with_stats(client, url, &upload, contents, auth).await;
        stats = call;
        if let Err(e) = result {
            return (Err(e), stats);
        }
    }
    (Ok(()), stats)
}

#[cfg(test)]
mod tests;
mod verify;

pub use verify::CatalogCheck;
