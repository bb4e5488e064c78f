//! Table-driven tests of the machine: time jumps straight to `poll_timeout()`, every instant is
//! asserted exactly, power cuts are `Machine::new` from the last `Persist`. This file holds the
//! rig and the fixtures every topic shares; each topic is a module of its own.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use ucupdate_protocol::{
    CheckResponse, FileKind, FileName, FirmwareVersion, Offer, OfferStatus, OfferedFile,
    PathSegment, Provisioning, Sha256Digest,
};

use super::*;
use crate::trust::{OfferRefusal, Origin, RefusalKind};

const SEC: u64 = 1000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;

const INTERNAL: &str = "http://pool.contoso.com/RequestHandler/ucdevice.upx";
const EXTERNAL: &str = "https://ext.contoso.com/RequestHandlerExt/ucdevice.upx";

fn v(text: &str) -> FirmwareVersion {
    text.parse().unwrap()
}

/// A URL as the machine emits it (`HttpUrl` always writes the port).
fn canon(url: &str) -> String {
    url.parse::<ucupdate_protocol::HttpUrl>()
        .unwrap()
        .to_string()
}

fn old() -> FirmwareVersion {
    v("1.0.522.101")
}

fn new_version() -> FirmwareVersion {
    v("3.5.6907.35")
}

/// Jitter off, so every instant is exact; a configured internal server unless changed.
fn config(change: impl FnOnce(&mut MachineConfig)) -> Arc<MachineConfig> {
    let mut c = MachineConfig {
        poll_jitter: Duration::ZERO,
        power_on_jitter: Duration::ZERO,
        sign_in_jitter: Duration::ZERO,
        check_now_jitter: Duration::ZERO,
        server_url: Some(INTERNAL.into()),
        ..MachineConfig::default()
    };
    change(&mut c);
    Arc::new(c)
}

fn file(kind: FileKind, name: &str, size: u64) -> OfferedFile {
    OfferedFile {
        kind,
        file_name: FileName::new(name).unwrap(),
        size: Some(size),
        sha256: Some(Sha256Digest([size as u8; 32])),
    }
}

/// An offer that lists the catalog before the image, to prove the image goes first.
fn offer(version: FirmwareVersion) -> Offer {
    let dir = format!("UCPhone/Polycom/CX700/A/ENU/{version}/CPE");
    Offer {
        base_url: format!("http://pool.contoso.com/DeviceUpdateFiles_Int/{dir}"),
        external_base_url: format!("https://ext.contoso.com/DeviceUpdateFiles_Ext/{dir}"),
        update_type: PathSegment::new("CPE").unwrap(),
        version,
        timestamp: None,
        status: OfferStatus::Approved,
        files: vec![
            file(FileKind::Catalog, "CPE.cat", 100),
            file(FileKind::Image, "CPE.nbt", 5000),
        ],
    }
}

fn update(version: FirmwareVersion) -> Event {
    Event::CheckDone(Ok(CheckResponse::Update(offer(version))))
}

fn no_update() -> Event {
    Event::CheckDone(Ok(CheckResponse::NoUpdate))
}

fn got(name: &str, size: u64) -> Event {
    // The catalog answers with the digest of the image `offer` lists (5,000 bytes).
    let catalog = if name.ends_with(".cat") {
        CatalogVerdict::Listed(crate::trust::ListedDigest::Sha256([5000u64 as u8; 32]))
    } else {
        CatalogVerdict::NotChecked
    };
    Event::DownloadDone(Ok(DownloadedFile {
        file_name: FileName::new(name).unwrap(),
        size,
        sha256: None,
        catalog,
    }))
}

fn cut(class: FailureClass, bytes_kept: u64) -> Event {
    Event::DownloadDone(Err(DownloadFailure { class, bytes_kept }))
}

fn ip() -> Event {
    Event::Resolved(Ok(vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))]))
}

fn provisioning(internal: Option<&str>, external: Option<&str>) -> Provisioning {
    Provisioning {
        enabled: true,
        internal_url: internal.map(str::to_owned),
        external_url: external.map(str::to_owned),
    }
}

/// A machine, its clock, and the actions it emitted.
struct Rig {
    m: Machine,
    now: Instant,
}

impl Rig {
    fn new(config: Arc<MachineConfig>, state: PersistedState) -> Rig {
        Rig::at(config, state, 1, Instant(0))
    }

    fn at(config: Arc<MachineConfig>, state: PersistedState, seed: u64, now: Instant) -> Rig {
        Rig {
            m: Machine::new(config, state, seed, now),
            now,
        }
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.m.poll_action()).collect()
    }

    fn send(&mut self, event: Event) -> Vec<Action> {
        self.m.handle(event, self.now).unwrap();
        self.actions()
    }

    /// Jumps to the next deadline (asserting it is `expected`) and fires it.
    fn tick_at(&mut self, expected: u64) -> Vec<Action> {
        assert_eq!(
            self.m.poll_timeout(),
            Some(Instant(expected)),
            "next deadline"
        );
        self.now = Instant(expected);
        self.m.handle_timeout(self.now);
        self.actions()
    }

    fn tick(&mut self) -> Vec<Action> {
        let t = self.m.poll_timeout().expect("a deadline");
        assert!(t >= self.now, "deadline in the past");
        self.now = t;
        self.m.handle_timeout(t);
        self.actions()
    }

    fn wait(&mut self, ms: u64) {
        self.now = Instant(self.now.0 + ms);
    }

    /// Runs until `until` with `respond` answering each I/O action at the instant it is emitted.
    /// Returns every action with its instant.
    fn serve(
        &mut self,
        until: u64,
        mut respond: impl FnMut(Instant, &Action) -> Option<Event>,
    ) -> Vec<(Instant, Action)> {
        let mut log = Vec::new();
        let mut pending: Vec<Action> = self.actions();
        loop {
            while !pending.is_empty() {
                for a in std::mem::take(&mut pending) {
                    let reply = respond(self.now, &a);
                    log.push((self.now, a));
                    if let Some(event) = reply {
                        self.m.handle(event, self.now).unwrap();
                        pending.extend(self.actions());
                    }
                }
            }
            match self.m.poll_timeout() {
                Some(t) if t.0 <= until => {
                    assert!(t >= self.now, "deadline in the past");
                    self.now = t;
                    self.m.handle_timeout(t);
                    pending = self.actions();
                }
                _ => return log,
            }
        }
    }
}

fn names(actions: &[Action]) -> Vec<&'static str> {
    actions.iter().map(Action::name).collect()
}

fn requests(log: &[(Instant, Action)]) -> Vec<Instant> {
    log.iter()
        .filter(|(_, a)| {
            matches!(
                a,
                Action::Resolve { .. } | Action::Check { .. } | Action::Download { .. }
            )
        })
        .map(|(t, _)| *t)
        .collect()
}

/// The most requests in any window of one hour.
fn max_per_hour(times: &[Instant]) -> usize {
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| t.0 < times[i].0 + HOUR)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn check_url(a: &Action) -> (String, bool, Option<String>) {
    match a {
        Action::Check {
            url,
            external,
            user,
            ..
        } => (url.to_string(), *external, user.clone()),
        other => panic!("expected a check, got {other}"),
    }
}

mod catalogs;
mod errors;
mod failures;
mod logs;
mod random;

fn download_of(a: &Action) -> (String, String, u64, bool) {
    match a {
        Action::Download {
            url,
            file,
            resume_from,
            external,
            ..
        } => (
            url.to_string(),
            file.file_name.to_string(),
            *resume_from,
            *external,
        ),
        other => panic!("expected a download, got {other}"),
    }
}

/// What the driver's disk holds across power cuts: fully verified files per version.
#[derive(Default)]
struct Disk {
    verified: HashSet<(FirmwareVersion, String)>,
}

/// A cooperative server and driver; records verified files and checks each install.
fn cooperate(disk: &mut Disk, a: &Action) -> Option<Event> {
    match a {
        Action::Check { .. } => Some(update(new_version())),
        Action::Download { version, file, .. } => {
            disk.verified.insert((*version, file.file_name.to_string()));
            Some(got(file.file_name.as_str(), file.size.unwrap_or(0)))
        }
        Action::Install { version, files } => {
            for f in files {
                assert!(
                    disk.verified.contains(&(*version, f.file_name.to_string())),
                    "installing unverified {}",
                    f.file_name
                );
            }
            assert_eq!(*version, new_version());
            Some(Event::InstallDone(Ok(())))
        }
        Action::Resolve { .. } => Some(ip()),
        Action::Persist(_) | Action::Reboot | Action::UploadLog { .. } => None,
    }
}

/// A check answered with `o`, from a machine in `cfg` that has `state`.
fn offered(cfg: Arc<MachineConfig>, state: PersistedState, o: Offer) -> (Rig, Vec<Action>) {
    let mut r = Rig::new(cfg, state);
    r.tick_at(0);
    let a = r.send(Event::CheckDone(Ok(CheckResponse::Update(o))));
    (r, a)
}

fn staged_files(state: &PersistedState) -> Vec<OfferedFile> {
    state.install.as_ref().map(|m| m.files.clone()).unwrap()
}

/// Every failure class, for the tests that go through them all.
const CLASSES: [FailureClass; 10] = [
    FailureClass::Dns,
    FailureClass::Connect,
    FailureClass::Tls,
    FailureClass::Timeout,
    FailureClass::Server5xx,
    FailureClass::Client4xx,
    FailureClass::Unauthorized,
    FailureClass::Protocol,
    FailureClass::HashMismatch,
    FailureClass::Io,
];

mod routing;
mod rules;
mod schedule;
mod states;
mod update;
