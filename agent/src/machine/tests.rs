//! Table-driven tests of the machine: time jumps straight to `poll_timeout()`, every instant is
//! asserted exactly, power cuts are `Machine::new` from the last `Persist`.

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

// ----------------------------------------------------------------------------------------------
// Discovery and routing
// ----------------------------------------------------------------------------------------------

#[test]
fn power_on_check_and_regular_poll_at_exact_instants() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    assert_eq!(r.m.phase(), Phase::Idle);
    let a = r.tick_at(0);
    assert_eq!(names(&a), ["check"]);
    assert_eq!(check_url(&a[0]), (canon(INTERNAL), false, None));
    assert!(matches!(&a[0], Action::Check { current_version, .. } if *current_version == old()));
    assert_eq!(r.m.phase(), Phase::Checking);
    r.wait(1500);
    assert_eq!(names(&r.send(no_update())), Vec::<&str>::new());
    assert_eq!(r.m.phase(), Phase::Idle);
    assert_eq!(r.tick_at(1500 + DAY).len(), 1);
    r.wait(700);
    r.send(no_update());
    assert_eq!(r.m.poll_timeout(), Some(Instant(2200 + 2 * DAY)));
    assert_eq!(r.m.status().last_outcome, Some(CheckOutcome::NoUpdate));
}

#[test]
fn discovery_builds_the_internal_url_from_the_dhcp_or_sip_domain() {
    let table = [
        (
            Some("corp.contoso.com"),
            Some("contoso.com"),
            "ucupdates-r2.corp.contoso.com",
        ),
        (None, Some("contoso.com."), "ucupdates-r2.contoso.com"),
    ];
    for (dhcp, sip, name) in table {
        let cfg = config(|c| {
            c.server_url = None;
            c.dhcp_domain = dhcp.map(str::to_owned);
            c.sip_domain = sip.map(str::to_owned);
        });
        let mut r = Rig::new(cfg, PersistedState::new(old()));
        assert_eq!(r.tick_at(0), [Action::Resolve { name: name.into() }]);
        assert_eq!(r.m.phase(), Phase::Discovering);
        r.wait(20);
        let a = r.send(ip());
        assert_eq!(
            check_url(&a[0]).0,
            format!("http://{name}:80/RequestHandler/ucdevice.upx")
        );
    }
    // Scheme and port are configurable.
    let cfg = config(|c| {
        c.server_url = None;
        c.sip_domain = Some("contoso.com".into());
        c.discovery_https = true;
        c.discovery_port = 443;
    });
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    r.tick_at(0);
    assert_eq!(
        check_url(&r.send(ip())[0]).0,
        "https://ucupdates-r2.contoso.com:443/RequestHandler/ucdevice.upx"
    );
}

#[test]
fn provisioned_urls_replace_discovery_and_are_persisted_first() {
    let cfg = config(|c| {
        c.server_url = None;
        c.dhcp_domain = Some("contoso.com".into());
        c.power_on_jitter = Duration::from_secs(3600);
    });
    let mut r = Rig::new(cfg.clone(), PersistedState::new(old()));
    assert!(r.m.poll_timeout().unwrap().0 > 5);
    let prov = provisioning(
        Some("https://pool.contoso.com:443/RequestHandler/ucdevice.upx"),
        Some(EXTERNAL),
    );
    r.wait(5);
    let a = r.send(Event::SignedIn {
        user: "sip:alice@contoso.com".into(),
        provisioning: Some(prov),
    });
    let [Action::Persist(saved)] = &a[..] else {
        panic!("{a:?}")
    };
    assert!(saved.ever_signed_in);
    assert_eq!(
        saved.provisioning.as_ref().unwrap().external_url.as_deref(),
        Some(EXTERNAL)
    );
    // The sign-in pulled the power-on check to now (sign-in jitter is 0 here).
    let a = r.tick_at(5);
    assert_eq!(
        check_url(&a[0]),
        (
            "https://pool.contoso.com:443/RequestHandler/ucdevice.upx".into(),
            false,
            Some("sip:alice@contoso.com".into())
        )
    );
    // After a power cut the provisioned URL is used without DNS, even with nobody signed in.
    let mut r = Rig::new(config(|c| c.server_url = None), saved.clone());
    assert_eq!(
        check_url(&r.tick_at(0)[0]).0,
        "https://pool.contoso.com:443/RequestHandler/ucdevice.upx"
    );
}

#[test]
fn configured_server_skips_discovery_and_provisioning() {
    let cfg = config(|c| c.dhcp_domain = Some("contoso.com".into()));
    let mut state = PersistedState::new(old());
    state.provisioning = Some(Box::new(
        provisioning(Some("https://other/RequestHandler/ucdevice.upx"), None).into(),
    ));
    let mut r = Rig::new(cfg, state);
    assert_eq!(check_url(&r.tick_at(0)[0]).0, canon(INTERNAL));
}

#[test]
fn no_server_known_or_updates_disabled_sends_nothing_and_polls_again() {
    let none = config(|c| c.server_url = None);
    let mut r = Rig::new(none, PersistedState::new(old()));
    assert!(r.tick_at(0).is_empty());
    assert_eq!(
        r.m.status().last_outcome,
        Some(CheckOutcome::NoServer(NoRoute::Unconfigured))
    );
    assert_eq!(r.m.poll_timeout(), Some(Instant(DAY)));

    let cfg = config(|c| {
        c.server_url = None;
        c.dhcp_domain = Some("contoso.com".into());
    });
    let mut state = PersistedState::new(old());
    state.provisioning = Some(Box::new(ProvisionedUrls {
        enabled: false,
        internal_url: Some(INTERNAL.into()),
        external_url: None,
    }));
    let mut r = Rig::new(cfg, state);
    assert!(r.tick_at(0).is_empty());
    assert_eq!(r.m.phase(), Phase::Idle);
    assert_eq!(r.m.poll_timeout(), Some(Instant(DAY)));
    // A quiet device says why it is quiet, and when it tries again.
    assert_eq!(
        r.m.waiting().to_string(),
        "no route to the update server: the last sign-in's provisioning turned the update \
         service off; the next check at 1d00:00:00.000"
    );
}

#[test]
fn a_device_outside_with_no_external_url_says_so_and_a_backoff_names_its_retry() {
    let cfg = config(|c| c.outside_firewall = Some(true));
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    assert!(r.tick_at(0).is_empty());
    assert_eq!(
        r.m.status().last_outcome,
        Some(CheckOutcome::NoServer(NoRoute::NoExternalUrl))
    );
    assert!(matches!(r.m.waiting(), Waiting::NextCheck { at, .. } if at == Instant(DAY)));

    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    let actions = r.tick_at(0);
    assert!(matches!(actions[0], Action::Check { .. }));
    assert!(matches!(
        r.m.waiting(),
        Waiting::Answer { what: "check", .. }
    ));
    r.m.handle(Event::CheckDone(Err(FailureClass::Connect)), Instant(5))
        .unwrap();
    let Waiting::Retry {
        at,
        download: None,
        failures: 1,
        error: Some(FailureClass::Connect),
    } = r.m.waiting()
    else {
        panic!("{:?}", r.m.waiting());
    };
    assert_eq!(Some(at), r.m.poll_timeout());
    assert!(r
        .m
        .waiting()
        .to_string()
        .starts_with("a retry of the check at "));
}

// ----------------------------------------------------------------------------------------------
// Scheduling, jitter, no duplicates
// ----------------------------------------------------------------------------------------------

#[test]
fn a_simulated_week_checks_once_a_day() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    let log = r.serve(7 * DAY, |_, a| {
        matches!(a, Action::Check { .. }).then(no_update)
    });
    let times = requests(&log);
    let expected: Vec<Instant> = (0..=7).map(|d| Instant(d * DAY)).collect();
    assert_eq!(times, expected);
}

#[test]
fn poll_jitter_stays_in_its_window_and_follows_the_seed() {
    let cfg = config(|c| c.poll_jitter = Duration::from_secs(24 * 360));
    let run = |seed| {
        let mut r = Rig::at(cfg.clone(), PersistedState::new(old()), seed, Instant(0));
        let log = r.serve(30 * DAY, |_, a| {
            matches!(a, Action::Check { .. }).then(no_update)
        });
        requests(&log)
    };
    let a = run(1);
    assert_eq!(a, run(1), "same seed, same instants");
    assert_ne!(a, run(2), "another seed, other instants");
    for pair in a.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            (DAY - DAY / 20..=DAY + DAY / 20).contains(&gap),
            "gap {gap}"
        );
    }
    assert!(
        a.windows(2).any(|p| p[1].0 - p[0].0 != DAY),
        "jitter applied"
    );
}

#[test]
fn a_fleet_powered_on_at_once_spreads_its_checks() {
    let cfg = Arc::new(MachineConfig {
        server_url: Some(INTERNAL.into()),
        ..MachineConfig::default()
    });
    let start = Instant(5 * HOUR);
    let first: Vec<Instant> = (0..1000u64)
        .map(|seed| {
            Machine::new(cfg.clone(), PersistedState::new(old()), seed, start)
                .poll_timeout()
                .unwrap()
        })
        .collect();
    let window = start.0..=start.0 + 10 * MIN;
    assert!(first.iter().all(|t| window.contains(&t.0)));
    let distinct: HashSet<Instant> = first.iter().copied().collect();
    assert!(distinct.len() > 990, "{} distinct instants", distinct.len());
    // No minute of the window holds more than 3x its fair share.
    let mut per_minute = [0usize; 11];
    for t in &first {
        per_minute[((t.0 - start.0) / MIN) as usize] += 1;
    }
    assert!(per_minute[..10].iter().all(|&n| n < 300), "{per_minute:?}");
    // Reproducible from the seed.
    let again = Machine::new(cfg.clone(), PersistedState::new(old()), 42, start).poll_timeout();
    assert_eq!(again, Some(first[42]));
}

#[test]
fn a_check_in_flight_is_never_duplicated() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    assert_eq!(r.tick_at(0).len(), 1);
    for step in 1..=5 {
        r.wait(10 * SEC);
        assert!(r.send(Event::CheckNow).is_empty(), "step {step}");
        r.m.handle_timeout(r.now);
        assert!(r.actions().is_empty());
    }
    let a = r.send(Event::SignedIn {
        user: "alice".into(),
        provisioning: None,
    });
    assert_eq!(names(&a), ["persist"], "ever_signed_in recorded, no check");
    assert_eq!(r.m.phase(), Phase::Checking);
    // The answer arrives; exactly one more check is due, at once (jitter 0), with the user.
    r.send(no_update());
    let a = r.tick_at(50 * SEC);
    assert_eq!(a.len(), 1);
    assert_eq!(check_url(&a[0]).2.as_deref(), Some("alice"));
    r.send(no_update());
    assert_eq!(
        r.m.poll_timeout(),
        Some(Instant(50 * SEC + DAY)),
        "no further due check"
    );
}

#[test]
fn sign_in_during_a_check_uses_the_new_provisioning_afterwards() {
    let cfg = config(|c| {
        c.server_url = None;
        c.dhcp_domain = Some("contoso.com".into());
        c.sign_in_jitter = Duration::from_secs(30);
    });
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    r.tick_at(0);
    r.send(ip());
    assert_eq!(r.m.phase(), Phase::Checking);
    r.wait(100);
    let prov = provisioning(
        Some("https://pool.contoso.com/RequestHandler/ucdevice.upx"),
        None,
    );
    let a = r.send(Event::SignedIn {
        user: "alice".into(),
        provisioning: Some(prov),
    });
    assert_eq!(names(&a), ["persist"]);
    r.wait(100);
    r.send(no_update());
    let next = r.m.poll_timeout().unwrap();
    assert!((200..=200 + 30 * SEC).contains(&next.0), "{next}");
    let a = r.tick();
    assert_eq!(
        check_url(&a[0]),
        (
            "https://pool.contoso.com:443/RequestHandler/ucdevice.upx".into(),
            false,
            Some("alice".into())
        )
    );
}

#[test]
fn check_now_in_idle_and_in_backoff_pulls_the_check_forward() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(no_update());
    r.wait(HOUR);
    r.send(Event::CheckNow);
    assert_eq!(r.tick_at(HOUR).len(), 1);
    r.send(Event::CheckDone(Err(FailureClass::Server5xx)));
    assert_eq!(r.m.phase(), Phase::Backoff);
    r.wait(5 * SEC);
    r.send(Event::CheckNow);
    assert_eq!(r.tick_at(HOUR + 5 * SEC).len(), 1);
}

// ----------------------------------------------------------------------------------------------
// Failures and back-off
// ----------------------------------------------------------------------------------------------

#[test]
fn back_off_caps_requests_per_hour_on_every_failure_class() {
    let classes = [
        FailureClass::Dns,
        FailureClass::Connect,
        FailureClass::Tls,
        FailureClass::Timeout,
        FailureClass::Server5xx,
        FailureClass::Client4xx,
        FailureClass::Unauthorized,
        FailureClass::Protocol,
        FailureClass::Io,
    ];
    for class in classes {
        for seed in 0..20 {
            // Default timings (2 min base, 1 h cap, power-on jitter), a signed-in user so a
            // 401 is a credentials loop and not the no-user denial.
            let cfg = Arc::new(MachineConfig {
                server_url: Some(INTERNAL.into()),
                outside_firewall: Some(false),
                ..MachineConfig::default()
            });
            let mut r = Rig::at(cfg, PersistedState::new(old()), seed, Instant(0));
            r.send(Event::SignedIn {
                user: "alice".into(),
                provisioning: None,
            });
            let log = r.serve(2 * DAY, |_, a| match a {
                Action::Check { .. } => Some(Event::CheckDone(Err(class))),
                _ => None,
            });
            let times = requests(&log);
            assert!(
                max_per_hour(&times) <= 6,
                "{class} seed {seed}: {} per hour",
                max_per_hour(&times)
            );
            // Never gives up: at the cap, at least one try per hour for two days.
            assert!(
                times.len() >= 2 * 24,
                "{class}: only {} requests",
                times.len()
            );
            assert_eq!(r.m.phase(), Phase::Backoff);
            assert!(r.m.poll_timeout().is_some());
        }
    }
}

#[test]
fn dns_failure_backs_off_exactly_within_its_bounds_and_retries_discovery() {
    let cfg = config(|c| {
        c.server_url = None;
        c.dhcp_domain = Some("contoso.com".into());
    });
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    r.tick_at(0);
    let mut at = 0;
    for failures in 1..=8u32 {
        assert!(r.send(Event::Resolved(Err(FailureClass::Dns))).is_empty());
        assert_eq!(r.m.phase(), Phase::Backoff);
        assert_eq!(r.m.status().consecutive_failures, failures);
        let ceiling = ((2 * MIN) << (failures - 1)).min(HOUR);
        let next = r.m.poll_timeout().unwrap().0;
        assert!(
            (at + ceiling / 2..=at + ceiling).contains(&next),
            "failure {failures}: {next}"
        );
        at = next;
        assert!(matches!(&r.tick()[..], [Action::Resolve { .. }]));
    }
    // An empty answer is a DNS failure too; a good one resets the count at the check.
    r.send(Event::Resolved(Ok(vec![])));
    assert_eq!(r.m.status().consecutive_failures, 9);
    r.tick();
    r.send(ip());
    r.send(no_update());
    assert_eq!(r.m.status().consecutive_failures, 0);
    assert_eq!(r.m.phase(), Phase::Idle);
}

#[test]
fn watchdog_turns_a_lost_answer_into_a_timeout_and_refuses_the_late_one() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    assert!(r.tick_at(10 * MIN).is_empty());
    assert_eq!(r.m.phase(), Phase::Backoff);
    assert_eq!(r.m.status().last_error, Some(FailureClass::Timeout));
    let late = r.m.handle(no_update(), r.now);
    assert_eq!(
        late,
        Err(MachineError::Unexpected {
            event: "check-done",
            phase: Phase::Backoff
        })
    );
}

#[test]
fn outside_the_firewall_is_detected_and_external_is_tried_at_once() {
    let cfg = config(|c| c.external_server_url = Some(EXTERNAL.into()));
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    r.send(Event::SignedIn {
        user: "alice".into(),
        provisioning: None,
    });
    assert!(!check_url(&r.tick_at(0)[0]).1);
    r.wait(3 * SEC);
    let a = r.send(Event::CheckDone(Err(FailureClass::Connect)));
    assert_eq!(
        check_url(&a[0]),
        (canon(EXTERNAL), true, Some("alice".into()))
    );
    assert_eq!(
        r.m.status().consecutive_failures,
        0,
        "the switch is not a failure"
    );
    // A failure of the external check backs off and retries external.
    r.send(Event::CheckDone(Err(FailureClass::Server5xx)));
    assert!(check_url(&r.tick()[0]).1);
    r.send(no_update());
    // The next regular cycle tries internal again (the device may be back inside).
    assert!(!check_url(&r.tick()[0]).1);
    // A 5xx of the internal server is not "outside": back off, do not switch.
    r.send(Event::CheckDone(Err(FailureClass::Server5xx)));
    assert_eq!(r.m.phase(), Phase::Backoff);
}

#[test]
fn external_without_a_user_is_denied_once_per_regular_check() {
    let cfg = config(|c| {
        c.server_url = None;
        c.outside_firewall = Some(true);
        c.external_server_url = Some(EXTERNAL.into());
    });
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    let log = r.serve(3 * DAY, |_, a| match a {
        Action::Check {
            external: true,
            user: None,
            ..
        } => Some(Event::CheckDone(Err(FailureClass::Unauthorized))),
        other => panic!("unexpected {other}"),
    });
    assert_eq!(
        requests(&log),
        [Instant(0), Instant(DAY), Instant(2 * DAY), Instant(3 * DAY)]
    );
    let s = r.m.status();
    assert_eq!(s.last_outcome, Some(CheckOutcome::DeniedNoUser));
    assert_eq!(
        s.last_outcome.unwrap().to_string(),
        "denied: no user signed in"
    );
    assert!(s.external);
}

#[test]
fn sign_out_drops_the_user_so_external_checks_are_denied_again() {
    let cfg = config(|c| {
        c.server_url = None;
        c.outside_firewall = Some(true);
        c.external_server_url = Some(EXTERNAL.into());
    });
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    r.send(Event::SignedIn {
        user: "alice".into(),
        provisioning: None,
    });
    assert_eq!(check_url(&r.tick_at(0)[0]).2.as_deref(), Some("alice"));
    r.send(Event::CheckDone(Err(FailureClass::Unauthorized)));
    assert_eq!(
        r.m.phase(),
        Phase::Backoff,
        "a refused user is a 401 loop: back off"
    );
    r.send(Event::SignedOut);
    assert_eq!(r.m.user(), None);
    assert_eq!(check_url(&r.tick()[0]).2, None);
    r.send(Event::CheckDone(Err(FailureClass::Unauthorized)));
    assert_eq!(r.m.phase(), Phase::Idle);
    assert_eq!(r.m.poll_timeout(), Some(Instant(r.now.0 + DAY)));
}

// ----------------------------------------------------------------------------------------------
// Download, install, reboot
// ----------------------------------------------------------------------------------------------

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

#[test]
fn a_whole_update_with_exact_instants_and_persist_before_each_dependent_action() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.send(Event::WallClock {
        unix_ms: 1_700_000_000_000,
    });
    r.tick_at(0);
    r.wait(2 * SEC);
    let a = r.send(update(new_version()));
    assert_eq!(names(&a), ["persist", "download"]);
    let Action::Persist(s) = &a[0] else {
        unreachable!()
    };
    let partial = s.download.as_deref().unwrap();
    assert_eq!(
        (
            partial.version,
            partial.file.as_str(),
            partial.completed,
            partial.bytes
        ),
        (new_version(), "CPE.cat", 0, 0)
    );
    // The catalog first: the image is then held to the digest it lists.
    let (url, name, from, ext) = download_of(&a[1]);
    assert_eq!(url, "http://pool.contoso.com:80/DeviceUpdateFiles_Int/UCPhone/Polycom/CX700/A/ENU/3.5.6907.35/CPE/CPE.cat");
    assert_eq!((name.as_str(), from, ext), ("CPE.cat", 0, false));
    assert_eq!(r.m.phase(), Phase::Downloading);
    assert_eq!(
        r.m.poll_timeout(),
        Some(Instant(2 * SEC + 4 * HOUR)),
        "download watchdog"
    );

    r.wait(SEC);
    let a = r.send(got("CPE.cat", 100));
    assert_eq!(names(&a), ["persist", "download"]);
    let Action::Download { file, .. } = &a[1] else {
        unreachable!()
    };
    assert_eq!(
        (file.file_name.as_str(), file.sha256),
        ("CPE.nbt", Some(Sha256Digest([5000u64 as u8; 32]))),
        "the image is held to the catalog's digest"
    );
    r.wait(60 * SEC);
    let a = r.send(got("CPE.nbt", 5000));
    let [Action::Persist(s)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(s.download, None);
    assert_eq!(s.install.as_ref().unwrap().version, new_version());
    assert_eq!(r.m.phase(), Phase::WaitingIdle);
    let staged_at = 63 * SEC;
    assert_eq!(r.m.status().target_version, Some(new_version()));

    let a = r.tick_at(staged_at + 5 * MIN);
    let [Action::Install { version, files }] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(*version, new_version());
    assert_eq!(files.len(), 2);
    assert!(
        files.iter().all(|f| f.sha256.is_some()),
        "the driver can re-verify"
    );
    assert_eq!(r.m.phase(), Phase::Installing);

    r.wait(30 * SEC);
    let a = r.send(Event::InstallDone(Ok(())));
    assert_eq!(names(&a), ["persist", "reboot"]);
    let Action::Persist(after) = &a[0] else {
        unreachable!()
    };
    assert_eq!(after.current_version, new_version());
    assert_eq!(after.fallback_version, Some(old()));
    assert_eq!(
        after.last_update_unix_ms,
        Some(1_700_000_000_000 + staged_at + 5 * MIN + 30 * SEC)
    );
    assert_eq!(
        (after.install.as_ref(), after.download.as_ref()),
        (None, None)
    );
    assert_eq!(r.m.phase(), Phase::Rebooting);
    // A reboot hook that did not reboot: after install_timeout the device carries on with
    // the new version current and checks as at power-on.
    // (power_on_jitter is zero here, so the check goes out at that instant.)
    let missed = staged_at + 5 * MIN + 30 * SEC + HOUR;
    assert!(
        matches!(&r.tick_at(missed)[..], [Action::Check { current_version, .. }] if *current_version == new_version())
    );

    // After the reboot: the new version is current and the old one the fallback.
    let mut booted = Rig::new(config(|_| {}), after.clone());
    let s = booted.m.status();
    assert_eq!(
        (s.current_version, s.fallback_version),
        (new_version(), Some(old()))
    );
    assert!(
        matches!(&booted.tick_at(0)[0], Action::Check { current_version, .. } if *current_version == new_version())
    );
    booted.send(update(new_version()));
    assert_eq!(
        booted.m.phase(),
        Phase::Idle,
        "the running version is not downloaded again"
    );
}

#[test]
fn a_differing_older_version_is_installed_too() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(new_version()));
    r.tick_at(0);
    let a = r.send(update(old()));
    assert_eq!(names(&a), ["persist", "download"]);
    assert_eq!(
        r.m.status().last_outcome,
        Some(CheckOutcome::Offered(old()))
    );
}

#[test]
fn external_check_downloads_from_the_external_base() {
    let cfg = config(|c| {
        c.outside_firewall = Some(true);
        c.external_server_url = Some(EXTERNAL.into());
    });
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    r.send(Event::SignedIn {
        user: "alice".into(),
        provisioning: None,
    });
    r.tick_at(0);
    let a = r.send(update(new_version()));
    let (url, _, _, ext) = download_of(&a[1]);
    assert!(ext);
    assert!(
        url.starts_with("https://ext.contoso.com:443/DeviceUpdateFiles_Ext/"),
        "{url}"
    );
    // A blank base on the check's side falls back to the other one, if its origin is allowed;
    // credentials go with it only because it is the configured external origin.
    let mut r = Rig::new(
        config(|c| {
            c.external_server_url = Some(EXTERNAL.into());
            c.offer_policy.allowed_file_origins = vec![Origin::of(&EXTERNAL.parse().unwrap())];
        }),
        PersistedState::new(old()),
    );
    r.tick_at(0);
    let mut o = offer(new_version());
    o.base_url = String::new();
    let a = r.send(Event::CheckDone(Ok(CheckResponse::Update(o))));
    assert!(download_of(&a[1]).3);
    // Both blank: a protocol failure, backed off.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    let mut o = offer(new_version());
    o.base_url = String::new();
    o.external_base_url = " ".into();
    assert!(r
        .send(Event::CheckDone(Ok(CheckResponse::Update(o))))
        .is_empty());
    assert_eq!(r.m.status().last_error, Some(FailureClass::Protocol));
    assert_eq!(r.m.phase(), Phase::Backoff);
}

#[test]
fn a_cut_download_resumes_from_the_bytes_kept_also_after_a_power_cut() {
    let cfg = config(|_| {});
    let mut r = Rig::new(cfg.clone(), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    r.send(got("CPE.cat", 100));
    r.wait(10 * SEC);
    let a = r.send(cut(FailureClass::Connect, 1200));
    let [Action::Persist(s)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(s.download.as_ref().unwrap().bytes, 1200);
    assert_eq!(r.m.phase(), Phase::Backoff);
    let a = r.tick();
    assert_eq!(
        names(&a),
        ["download"],
        "no new check, no redundant persist"
    );
    assert_eq!(download_of(&a[0]).2, 1200);

    // Power cut now; the driver's partial file has grown to 3000 bytes and it says so.
    let mut state = s.clone();
    state.download.as_mut().unwrap().bytes = 3000;
    let mut r = Rig::new(cfg, state.clone());
    assert_eq!(names(&r.tick_at(0)), ["check"]);
    let a = r.send(update(new_version()));
    // The catalog is verified again first, without overwriting the record of the image...
    assert_eq!(names(&a), ["download"]);
    assert_eq!(
        download_of(&a[0]),
        (download_of(&a[0]).0, "CPE.cat".into(), 0, false)
    );
    assert_eq!(r.m.persisted().download, state.download);
    // ...and then the image resumes where it was.
    let a = r.send(got("CPE.cat", 100));
    assert_eq!(names(&a), ["download"]);
    assert_eq!(download_of(&a[0]).1, "CPE.nbt");
    assert_eq!(download_of(&a[0]).2, 3000);
    // The server meanwhile approved something else: the partial is dropped.
    let a = r.send(cut(FailureClass::Timeout, 3500));
    assert_eq!(names(&a), ["persist"]);
    let Action::Persist(s) = &a[0] else {
        unreachable!()
    };
    let other = v("4.0.7577.4066");
    let mut r = Rig::new(config(|_| {}), s.clone());
    r.tick_at(0);
    let a = r.send(update(other));
    let Action::Persist(fresh) = &a[0] else {
        panic!("{a:?}")
    };
    assert_eq!(fresh.download.as_ref().unwrap().version, other);
    assert_eq!(
        download_of(&a[1]),
        (download_of(&a[1]).0, "CPE.cat".into(), 0, false)
    );
}

#[test]
fn a_hash_mismatch_discards_the_bytes_and_counts_until_the_update_is_given_up() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    r.send(got("CPE.cat", 100));
    // The catalog's request counted as the first of the five attempts.
    for attempt in 1..=3 {
        let a = r.send(cut(FailureClass::HashMismatch, 5000));
        if attempt == 1 {
            assert_eq!(
                names(&a),
                Vec::<&str>::new(),
                "bytes were 0 already: nothing to persist"
            );
        }
        assert_eq!(r.m.phase(), Phase::Backoff);
        assert_eq!(r.m.status().consecutive_failures, attempt);
        let a = r.tick();
        assert_eq!(download_of(&a[0]).2, 0, "never resumes unverified bytes");
    }
    // The fifth attempt (the fourth at the image) gives the offer up until the next check.
    let t = r.now.0;
    r.send(cut(FailureClass::HashMismatch, 5000));
    assert_eq!(r.m.phase(), Phase::Idle);
    assert_eq!(r.m.poll_timeout(), Some(Instant(t + DAY)));
    assert_eq!(r.m.status().last_error, Some(FailureClass::HashMismatch));
    // The image was held to the catalog's digest: the status names the catalog's reason.
    assert_eq!(
        r.m.status().last_outcome,
        Some(CheckOutcome::Untrusted(RefusalKind::DigestMismatch))
    );
    assert_eq!(r.m.status().last_outcome.unwrap().code(), 0x5);
    // A resumable cut persists the kept bytes; a later mismatch resets them to 0.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    r.send(cut(FailureClass::Server5xx, 700));
    r.tick();
    let a = r.send(cut(FailureClass::HashMismatch, 5000));
    let [Action::Persist(s)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(s.download.as_ref().unwrap().bytes, 0);
    // A completed file whose size differs from the offer is a mismatch too.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    r.send(got("CPE.cat", 100));
    r.send(got("CPE.nbt", 4999));
    assert_eq!(r.m.status().last_error, Some(FailureClass::HashMismatch));
    assert_eq!(r.m.phase(), Phase::Backoff);
}

#[test]
fn download_failures_are_capped_per_hour_too() {
    let cfg = Arc::new(MachineConfig {
        server_url: Some(INTERNAL.into()),
        ..MachineConfig::default()
    });
    let classes = [
        FailureClass::HashMismatch,
        FailureClass::Connect,
        FailureClass::Timeout,
        FailureClass::Server5xx,
        FailureClass::Unauthorized,
        FailureClass::Io,
    ];
    for (class, seed) in classes
        .into_iter()
        .flat_map(|c| (0..10).map(move |s| (c, s)))
    {
        let mut r = Rig::at(cfg.clone(), PersistedState::new(old()), seed, Instant(0));
        r.send(Event::SignedIn {
            user: "alice".into(),
            provisioning: None,
        });
        let log = r.serve(3 * DAY, |_, a| match a {
            Action::Check { .. } => Some(update(new_version())),
            Action::Download { .. } => Some(cut(class, 0)),
            _ => None,
        });
        let times = requests(&log);
        let most = max_per_hour(&times);
        assert!(most <= 6, "{class} seed {seed}: {most} per hour");
        let checks = log
            .iter()
            .filter(|(_, a)| matches!(a, Action::Check { .. }))
            .count();
        assert!(
            (3..=4).contains(&checks),
            "one give-up per day, then a fresh check: {checks}"
        );
    }
}

#[test]
fn idle_wait_is_restarted_by_activity_and_calls() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    r.send(got("CPE.cat", 100));
    r.send(got("CPE.nbt", 5000));
    assert_eq!(r.m.poll_timeout(), Some(Instant(5 * MIN)));
    r.wait(4 * MIN);
    r.send(Event::UserActivity);
    assert_eq!(r.m.poll_timeout(), Some(Instant(9 * MIN)));
    r.wait(MIN);
    r.send(Event::CallStarted);
    assert_eq!(r.m.poll_timeout(), None, "never installs during a call");
    r.wait(HOUR);
    r.m.handle_timeout(r.now);
    assert!(r.actions().is_empty());
    r.send(Event::CallEnded);
    let ended = r.now.0;
    assert_eq!(r.m.poll_timeout(), Some(Instant(ended + 5 * MIN)));
    // A check-now while an update waits does not start a second request.
    assert!(r.send(Event::CheckNow).is_empty());
    assert_eq!(names(&r.tick_at(ended + 5 * MIN)), ["install"]);
}

#[test]
fn a_failed_install_drops_the_marker_and_polls_again() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    r.send(got("CPE.cat", 100));
    r.send(got("CPE.nbt", 5000));
    r.tick_at(5 * MIN);
    let a = r.send(Event::InstallDone(Err(FailureClass::HashMismatch)));
    let [Action::Persist(s)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!((s.install.as_ref(), s.current_version), (None, old()));
    assert_eq!(r.m.phase(), Phase::Idle);
    assert_eq!(r.m.poll_timeout(), Some(Instant(5 * MIN + DAY)));
    // A hung install hook hits the watchdog the same way.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    r.send(got("CPE.cat", 100));
    r.send(got("CPE.nbt", 5000));
    r.tick_at(5 * MIN);
    assert_eq!(names(&r.tick_at(5 * MIN + HOUR)), ["persist"]);
    assert_eq!(r.m.status().last_error, Some(FailureClass::Timeout));
}

#[test]
fn power_on_with_a_marker_installs_after_idle_and_stale_records_are_dropped() {
    let mut state = PersistedState::new(old());
    state.install = Some(Box::new(InstallMarker {
        version: new_version(),
        files: offer(new_version()).files,
    }));
    let mut r = Rig::at(config(|_| {}), state.clone(), 1, Instant(100));
    assert_eq!(r.m.phase(), Phase::WaitingIdle);
    assert_eq!(names(&r.tick_at(100 + 5 * MIN)), ["install"]);
    // A marker for the version already running (cut after the confirming write) is dropped.
    let mut state = PersistedState::new(new_version());
    state.install = Some(Box::new(InstallMarker {
        version: new_version(),
        files: vec![],
    }));
    let mut r = Rig::new(config(|_| {}), state);
    let a = r.actions();
    let [Action::Persist(s)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(s.install, None);
    assert_eq!(r.m.phase(), Phase::Idle);
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

#[test]
fn a_power_cut_after_any_action_ends_on_the_target_and_never_installs_unverified_bytes() {
    let cfg = config(|_| {});
    // The uninterrupted run, for its length.
    let mut disk = Disk::default();
    let mut r = Rig::new(cfg.clone(), PersistedState::new(old()));
    let full = r.serve(DAY, |_, a| cooperate(&mut disk, a));
    assert!(full.iter().any(|(_, a)| matches!(a, Action::Reboot)));
    for cut_after in 0..full.len() {
        let mut disk = Disk::default();
        let mut r = Rig::new(cfg.clone(), PersistedState::new(old()));
        let mut seen = 0;
        let mut last = PersistedState::new(old());
        let mut done = false;
        // Run until `cut_after` actions were performed, remembering the last state written.
        r.serve(DAY, |_, a| {
            if done {
                return None;
            }
            seen += 1;
            if seen > cut_after {
                done = true;
                return None;
            }
            if let Action::Persist(s) = a {
                last = s.clone();
            }
            cooperate(&mut disk, a)
        });
        // Power comes back: a new machine from what was on disk.
        let mut r = Rig::at(cfg.clone(), last.clone(), 9, Instant(0));
        let mut final_state = last;
        let mut rebooted = false;
        r.serve(2 * DAY, |_, a| {
            if rebooted {
                return None;
            }
            if let Action::Persist(s) = a {
                final_state = s.clone();
            }
            if matches!(a, Action::Reboot) {
                rebooted = true;
            }
            cooperate(&mut disk, a)
        });
        if final_state.current_version != new_version() {
            // The cut came after the confirming write: that state already names the target.
            panic!(
                "cut after action {cut_after}: ended on {}",
                final_state.current_version
            );
        }
        assert_eq!(
            final_state.fallback_version,
            Some(old()),
            "cut after {cut_after}"
        );
        assert_eq!(
            (final_state.install.as_ref(), final_state.download.as_ref()),
            (None, None)
        );
    }
}

#[test]
fn install_is_only_emitted_after_its_marker_was_persisted() {
    let mut disk = Disk::default();
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    let mut marker_written = false;
    r.serve(DAY, |_, a| {
        match a {
            Action::Persist(s) => marker_written |= s.install.is_some(),
            Action::Install { .. } => assert!(marker_written, "install before its marker"),
            Action::Reboot => return None,
            _ => {}
        }
        cooperate(&mut disk, a)
    });
    assert!(marker_written);
}

// ----------------------------------------------------------------------------------------------
// Logs
// ----------------------------------------------------------------------------------------------

#[test]
fn logs_upload_after_checks_without_blocking_them() {
    let cfg = config(|c| c.log_upload = LogPolicy::AfterCheck);
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    r.tick_at(0);
    let a = r.send(no_update());
    assert_eq!(
        a,
        [Action::UploadLog {
            url: INTERNAL.parse().unwrap(),
            external: false
        }]
    );
    // Still in flight at the next check: not duplicated, and the check is not held up.
    assert_eq!(names(&r.tick_at(DAY)), ["check"]);
    r.send(no_update());
    let a = r.send(Event::LogUploaded(Err(FailureClass::Server5xx)));
    assert!(a.is_empty());
    assert_eq!(r.m.poll_timeout(), Some(Instant(2 * DAY)));
    r.tick();
    assert_eq!(
        names(&r.send(no_update())),
        ["upload-log"],
        "retried at the next check"
    );
    // Daily: one per day even with extra checks in between.
    let cfg = config(|c| c.log_upload = LogPolicy::Daily);
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    r.tick_at(0);
    assert_eq!(names(&r.send(no_update())), ["upload-log"]);
    r.send(Event::LogUploaded(Ok(())));
    r.send(Event::CheckNow);
    r.tick();
    assert!(r.send(no_update()).is_empty());
    // Never is the default.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    assert!(r.send(no_update()).is_empty());
}

// ----------------------------------------------------------------------------------------------
// Errors, traces, size
// ----------------------------------------------------------------------------------------------

#[test]
fn illegal_events_are_errors_that_change_nothing() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    let table: Vec<(Event, &str)> = vec![
        (no_update(), "check-done"),
        (ip(), "resolved"),
        (got("CPE.nbt", 1), "download-done"),
        (Event::InstallDone(Ok(())), "install-done"),
        (Event::LogUploaded(Ok(())), "log-uploaded"),
    ];
    for (event, name) in table {
        let before = (r.m.phase(), r.m.poll_timeout(), r.m.persisted().clone());
        assert_eq!(
            r.m.handle(event, r.now),
            Err(MachineError::Unexpected {
                event: name,
                phase: Phase::Idle
            })
        );
        assert_eq!(
            before,
            (r.m.phase(), r.m.poll_timeout(), r.m.persisted().clone())
        );
        assert!(r.actions().is_empty());
    }
    r.tick_at(0);
    assert!(matches!(
        r.m.handle(got("CPE.nbt", 1), r.now),
        Err(MachineError::Unexpected {
            phase: Phase::Checking,
            ..
        })
    ));
    r.send(update(new_version()));
    assert_eq!(
        r.m.handle(got("CPE.nbt", 5000), r.now),
        Err(MachineError::WrongFile {
            expected: FileName::new("CPE.cat").unwrap(),
            got: FileName::new("CPE.nbt").unwrap()
        })
    );
    assert_eq!(r.m.phase(), Phase::Downloading);
    assert!(r.m.handle(no_update(), r.now).is_err());
    assert!(r.m.handle(Event::InstallDone(Ok(())), r.now).is_err());
}

#[test]
fn traces_are_one_line_each() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    let mut lines = Vec::new();
    let mut disk = Disk::default();
    let log = r.serve(DAY, |_, a| cooperate(&mut disk, a));
    for (t, a) in &log {
        lines.push(format!("{t} {a}"));
    }
    lines.push(update(new_version()).to_string());
    lines.push(cut(FailureClass::Connect, 5).to_string());
    lines.push(
        Event::SignedIn {
            user: "alice".into(),
            provisioning: Some(provisioning(None, None)),
        }
        .to_string(),
    );
    lines.push(r.m.phase().to_string());
    assert!(lines.iter().all(|l| !l.contains('\n')), "{lines:#?}");
    assert_eq!(
        lines[0],
        format!(
            "0d00:00:00.000 check internal {} v1.0.522.101 user=-",
            canon(INTERNAL)
        )
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("0d00:00:00.000 download internal http://pool.contoso.com:80/")));
    assert!(lines.contains(&"check-done update 3.5.6907.35 (2 files)".to_owned()));
    assert!(lines.contains(&"download-done failed: connect (5 bytes kept)".to_owned()));
    assert!(r
        .m
        .status()
        .to_string()
        .contains("current version: 3.5.6907.35"));
}

#[test]
fn an_idle_machine_is_small() {
    let size = std::mem::size_of::<Machine>();
    println!("size_of::<Machine>() = {size} bytes");
    // 272 bytes before the update moved into its states; it must not grow past that.
    assert!(size <= 272, "Machine grew to {size} bytes");
    // An idle machine owns no heap beyond its persisted strings: the outbox is released.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(no_update());
    assert_eq!(r.m.outbox.capacity(), 0);
    // The update lives only in the states that need it; an idle machine holds none.
    assert!(matches!(r.m.state, State::Idle { .. }));
}

// ----------------------------------------------------------------------------------------------
// Random drivers: whatever happens, in whatever order, the invariants hold
// ----------------------------------------------------------------------------------------------

mod random {
    use proptest::prelude::*;

    use super::*;

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

    /// A driver that answers at random, cuts the power at random and checks every step.
    struct Model {
        cfg: Arc<MachineConfig>,
        m: Machine,
        now: Instant,
        /// The one request the machine waits for, if any.
        outstanding: Option<Action>,
        last_persisted: PersistedState,
        verified: HashSet<(FirmwareVersion, String)>,
        installed_ok: HashSet<FirmwareVersion>,
        /// Since when an upload is in flight.
        log_in_flight: Option<Instant>,
    }

    impl Model {
        fn new(cfg: Arc<MachineConfig>) -> Model {
            let state = PersistedState::new(old());
            Model {
                m: Machine::new(cfg.clone(), state.clone(), 0, Instant(0)),
                cfg,
                now: Instant(0),
                outstanding: None,
                last_persisted: state,
                verified: HashSet::new(),
                installed_ok: HashSet::new(),
                log_in_flight: None,
            }
        }

        fn drain(&mut self) {
            while let Some(a) = self.m.poll_action() {
                match &a {
                    Action::Persist(s) => {
                        if s.current_version != self.last_persisted.current_version {
                            assert!(
                                self.installed_ok.contains(&s.current_version),
                                "current without a confirmed install"
                            );
                            assert_eq!(
                                s.fallback_version,
                                Some(self.last_persisted.current_version)
                            );
                        }
                        self.last_persisted = s.clone();
                    }
                    Action::Resolve { .. }
                    | Action::Check { .. }
                    | Action::Download { .. }
                    | Action::Install { .. } => {
                        assert!(
                            self.outstanding.is_none(),
                            "{a} while {} is in flight",
                            self.outstanding.as_ref().unwrap()
                        );
                        if let Action::Install { version, files } = &a {
                            let marker = self
                                .last_persisted
                                .install
                                .as_deref()
                                .expect("install without a persisted marker");
                            assert_eq!(marker.version, *version);
                            for f in files {
                                assert!(
                                    self.verified.contains(&(*version, f.file_name.to_string())),
                                    "unverified {}",
                                    f.file_name
                                );
                            }
                        }
                        self.outstanding = Some(a);
                    }
                    Action::UploadLog { .. } => {
                        // A second one only once the first is presumed lost (request_timeout).
                        let lost = self
                            .log_in_flight
                            .is_none_or(|t| self.now >= t + self.cfg.request_timeout);
                        assert!(lost, "two log uploads in flight");
                        self.log_in_flight = Some(self.now);
                    }
                    Action::Reboot => {
                        self.power_cut();
                        return;
                    }
                }
            }
        }

        fn power_cut(&mut self) {
            self.m = Machine::new(
                self.cfg.clone(),
                self.last_persisted.clone(),
                self.now.0,
                self.now,
            );
            self.outstanding = None;
            self.log_in_flight = None;
            self.drain();
        }

        fn advance(&mut self, by: u64) {
            let target = self.now.0 + by;
            while let Some(t) = self.m.poll_timeout().filter(|t| t.0 <= target) {
                assert!(t >= self.now);
                self.now = t;
                let in_flight = matches!(
                    self.m.phase(),
                    Phase::Discovering | Phase::Checking | Phase::Downloading | Phase::Installing
                );
                if in_flight {
                    // The only deadline of an in-flight phase is its watchdog: the answer is lost.
                    self.outstanding = None;
                }
                self.m.handle_timeout(t);
                self.drain();
            }
            self.now = Instant(target);
            match self.m.phase() {
                Phase::WaitingIdle => {}
                _ => assert!(
                    self.m.poll_timeout().is_some(),
                    "{} without a deadline",
                    self.m.phase()
                ),
            }
        }

        fn answer(&mut self, pick: u8) {
            let Some(action) = self.outstanding.take() else {
                // Nothing to answer: a stray completion must be refused without effect.
                let before = (self.m.phase(), self.m.poll_timeout());
                assert!(self.m.handle(no_update(), self.now).is_err());
                assert_eq!(before, (self.m.phase(), self.m.poll_timeout()));
                return;
            };
            let fail = pick.is_multiple_of(3);
            let class = CLASSES[(pick / 3) as usize % CLASSES.len()];
            let event = match &action {
                Action::Resolve { .. } if fail => Event::Resolved(Err(class)),
                Action::Resolve { .. } => ip(),
                Action::Check { .. } if fail => Event::CheckDone(Err(class)),
                Action::Check { .. } => match pick % 4 {
                    0 => no_update(),
                    1 => update(old()),
                    2 => update(v("2.0.0.0")),
                    _ => update(new_version()),
                },
                Action::Download { file, version, .. } if fail => {
                    let _ = (file, version);
                    cut(class, u64::from(pick))
                }
                Action::Download { file, version, .. } => {
                    self.verified.insert((*version, file.file_name.to_string()));
                    got(file.file_name.as_str(), file.size.unwrap_or(0))
                }
                Action::Install { .. } if fail => Event::InstallDone(Err(class)),
                Action::Install { version, .. } => {
                    self.installed_ok.insert(*version);
                    Event::InstallDone(Ok(()))
                }
                _ => unreachable!(),
            };
            self.m.handle(event, self.now).unwrap();
            self.drain();
        }

        fn spontaneous(&mut self, pick: u8) {
            let event = match pick % 9 {
                0 => Event::CheckNow,
                1 => Event::SignedIn {
                    user: "alice".into(),
                    provisioning: None,
                },
                2 => Event::SignedIn {
                    user: "bob".into(),
                    provisioning: Some(provisioning(Some(INTERNAL), Some(EXTERNAL))),
                },
                3 => Event::SignedOut,
                4 => Event::UserActivity,
                5 => Event::CallStarted,
                6 => Event::CallEnded,
                7 => Event::WallClock {
                    unix_ms: 1_700_000_000_000 + self.now.0,
                },
                _ => {
                    if self.log_in_flight.is_some() {
                        self.log_in_flight = None;
                        Event::LogUploaded(Ok(()))
                    } else {
                        Event::UserActivity
                    }
                }
            };
            self.m.handle(event, self.now).unwrap();
            self.drain();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn invariants_hold_under_any_driver(
            outside in proptest::option::of(any::<bool>()),
            discover in any::<bool>(),
            steps in proptest::collection::vec((0u8..4, 0u64..(3 * HOUR), any::<u8>()), 1..150),
        ) {
            let cfg = Arc::new(MachineConfig {
                outside_firewall: outside,
                server_url: (!discover).then(|| INTERNAL.to_owned()),
                external_server_url: Some(EXTERNAL.to_owned()),
                dhcp_domain: Some("contoso.com".into()),
                log_upload: LogPolicy::AfterCheck,
                ..MachineConfig::default()
            });
            let mut model = Model::new(cfg);
            model.drain();
            for (op, delay, pick) in steps {
                model.advance(delay);
                match op {
                    0 | 1 => model.answer(pick),
                    2 => model.spontaneous(pick),
                    _ if pick % 8 == 0 => model.power_cut(),
                    _ => {}
                }
            }
            // Left alone with a server that always answers "no update", it settles into Idle.
            model.m.handle(Event::CallEnded, model.now).unwrap();
            for _ in 0..200 {
                if model.outstanding.is_some() {
                    let event = match model.outstanding.take() {
                        Some(Action::Resolve { .. }) => ip(),
                        Some(Action::Check { .. }) => no_update(),
                        Some(Action::Download { file, .. }) => got(file.file_name.as_str(), file.size.unwrap_or(0)),
                        _ => Event::InstallDone(Ok(())),
                    };
                    if let Event::InstallDone(_) = event {
                        model.installed_ok.insert(model.last_persisted.install.as_ref().unwrap().version);
                    }
                    if let Event::DownloadDone(Ok(ref d)) = event {
                        let version = model.last_persisted.download.as_ref().unwrap().version;
                        model.verified.insert((version, d.file_name.to_string()));
                    }
                    model.m.handle(event, model.now).unwrap();
                    model.drain();
                } else if model.m.phase() == Phase::Idle {
                    break;
                } else {
                    model.advance(HOUR);
                }
            }
            prop_assert_eq!(model.m.phase(), Phase::Idle);
            prop_assert!(model.m.poll_timeout().is_some());
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Smaller rules
// ----------------------------------------------------------------------------------------------

#[test]
fn a_withdrawn_offer_drops_the_partial_download() {
    let mut state = PersistedState::new(old());
    state.download = Some(Box::new(PartialDownload {
        version: new_version(),
        url: "http://pool.contoso.com/x/CPE.nbt".into(),
        file: FileName::new("CPE.nbt").unwrap(),
        completed: 0,
        bytes: 77,
    }));
    let mut r = Rig::new(config(|_| {}), state.clone());
    r.tick_at(0);
    let a = r.send(no_update());
    let [Action::Persist(s)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(s.download, None);
    // A record whose position names another file than the offer's (position 0 is the
    // catalog) starts over.
    let mut r = Rig::new(config(|_| {}), state);
    r.tick_at(0);
    let a = r.send(update(new_version()));
    assert_eq!(names(&a), ["persist", "download"]);
    assert_eq!(
        (download_of(&a[1]).1.as_str(), download_of(&a[1]).2),
        ("CPE.cat", 0)
    );
}

/// Issue 18: `check-now` after a reboot hook that returned printed `ok` and did nothing; the
/// agent stayed "rebooting" and re-ran the hook every hour.
#[test]
fn a_reboot_that_does_not_happen_is_taken_as_done_after_install_timeout() {
    let cfg = config(|c| c.power_on_jitter = Duration::from_secs(10 * 60));
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    let mut disk = Disk::default();
    let log = r.serve(HOUR, |_, a| cooperate(&mut disk, a));
    assert!(matches!(log.last(), Some((_, Action::Reboot))));
    let rebooted_at = r.now.0;
    assert_eq!(r.m.phase(), Phase::Rebooting);
    assert!(r.send(Event::UserActivity).is_empty());
    // No second reboot request: idle at install_timeout, the check within power_on_jitter.
    assert!(r.tick_at(rebooted_at + HOUR).is_empty());
    assert_eq!(r.m.phase(), Phase::Idle);
    let at = r.m.poll_timeout().unwrap().0;
    assert!(
        (rebooted_at + HOUR..=rebooted_at + HOUR + 10 * MIN).contains(&at),
        "{at}"
    );
    let a = r.tick();
    assert!(
        matches!(&a[..], [Action::Check { current_version, .. }] if *current_version == new_version()),
        "{a:?}"
    );
}

#[test]
fn check_now_or_sign_in_while_rebooting_checks_at_once() {
    for event in [
        Event::CheckNow,
        Event::SignedIn {
            user: "CONTOSO\\alice".into(),
            provisioning: None,
        },
    ] {
        let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
        let mut disk = Disk::default();
        r.serve(HOUR, |_, a| cooperate(&mut disk, a));
        assert_eq!(r.m.phase(), Phase::Rebooting);
        let what = format!("{event:?}");
        r.wait(MIN);
        r.send(event);
        assert_eq!(r.m.phase(), Phase::Idle, "{what}");
        let a = r.tick_at(r.now.0);
        assert!(
            matches!(&a[..], [Action::Check { current_version, .. }] if *current_version == new_version()),
            "{what}: {a:?}"
        );
    }
}

#[test]
fn status_names_the_server_and_the_step() {
    let cfg = config(|c| {
        c.server_url = None;
        c.sip_domain = Some("contoso.com".into());
    });
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    let s = r.m.status();
    assert_eq!(
        s.server.as_deref(),
        Some("ucupdates-r2.contoso.com (to be resolved)")
    );
    assert_eq!(
        (s.phase, s.next_deadline, s.signed_in),
        (Phase::Idle, Some(Instant(0)), false)
    );
    r.tick_at(0);
    r.send(ip());
    let s = r.m.status();
    assert_eq!(
        s.server.as_deref(),
        Some("http://ucupdates-r2.contoso.com:80/RequestHandler/ucdevice.upx")
    );
    r.send(Event::CheckDone(Err(FailureClass::Server5xx)));
    let text = r.m.status().to_string();
    assert!(text.contains("last outcome: failed: server-5xx"), "{text}");
    assert!(text.contains("consecutive failures: 1"), "{text}");
    // A repeated sign-in with the same provisioning writes nothing new.
    let prov = provisioning(Some(INTERNAL), None);
    let first = r.send(Event::SignedIn {
        user: "a".into(),
        provisioning: Some(prov.clone()),
    });
    assert_eq!(names(&first), ["persist"]);
    let again = r.send(Event::SignedIn {
        user: "a".into(),
        provisioning: Some(prov),
    });
    assert!(again.is_empty());
}

#[test]
fn early_timeouts_do_nothing_and_wall_time_only_dates_the_install() {
    let mut r = Rig::new(
        config(|c| c.power_on_jitter = Duration::from_secs(600)),
        PersistedState::new(old()),
    );
    let first = r.m.poll_timeout().unwrap();
    assert!(first.0 > 1);
    r.m.handle_timeout(Instant(first.0 - 1));
    assert!(r.actions().is_empty());
    assert_eq!(
        (r.m.phase(), r.m.poll_timeout()),
        (Phase::Idle, Some(first))
    );
    // No WallClock: the update still happens, its date is unknown.
    let mut disk = Disk::default();
    let log = r.serve(DAY, |_, a| cooperate(&mut disk, a));
    let confirmed = log.iter().rev().find_map(|(_, a)| match a {
        Action::Persist(s) => Some(s.clone()),
        _ => None,
    });
    let confirmed = confirmed.unwrap();
    assert_eq!(confirmed.current_version, new_version());
    assert_eq!(confirmed.last_update_unix_ms, None);
    // A WallClock sent later (after an NTP step) dates by the offset at that time.
    let cfg = config(|c| c.power_on_jitter = Duration::from_secs(3600));
    let mut r = Rig::at(cfg, PersistedState::new(old()), 1, Instant(10 * SEC));
    assert!(r.m.poll_timeout().unwrap().0 > 15 * SEC);
    r.send(Event::WallClock { unix_ms: 1_000_000 });
    r.wait(5 * SEC);
    r.send(Event::WallClock { unix_ms: 2_000_000 });
    let mut disk = Disk::default();
    let log = r.serve(DAY, |_, a| cooperate(&mut disk, a));
    let (at, _) = log
        .iter()
        .find(|(_, a)| matches!(a, Action::Reboot))
        .unwrap();
    let Some((_, Action::Persist(s))) = log
        .iter()
        .rev()
        .find(|(_, a)| matches!(a, Action::Persist(_)))
    else {
        unreachable!()
    };
    assert_eq!(s.last_update_unix_ms, Some(2_000_000 + (at.0 - 15 * SEC)));
}

#[test]
fn a_fleet_does_not_phase_lock_over_ten_days() {
    let cfg = Arc::new(MachineConfig {
        server_url: Some(INTERNAL.into()),
        ..MachineConfig::default()
    });
    let mut checks_on_day_ten = Vec::new();
    for seed in 0..1000u64 {
        let mut r = Rig::at(cfg.clone(), PersistedState::new(old()), seed, Instant(0));
        let log = r.serve(11 * DAY, |_, a| {
            matches!(a, Action::Check { .. }).then(no_update)
        });
        checks_on_day_ten.extend(
            requests(&log)
                .into_iter()
                .filter(|t| (10 * DAY..11 * DAY).contains(&t.0)),
        );
    }
    checks_on_day_ten.sort();
    let spread = checks_on_day_ten.last().unwrap().0 - checks_on_day_ten[0].0;
    assert!(
        spread > 3 * HOUR,
        "day-ten checks spread over only {spread} ms"
    );
    // The busiest minute holds a small share of the fleet (all at once would be 1000).
    let mut per_minute = std::collections::HashMap::<u64, usize>::new();
    for t in &checks_on_day_ten {
        *per_minute.entry(t.0 / MIN).or_default() += 1;
    }
    let busiest = per_minute.values().max().copied().unwrap_or(0);
    assert!(busiest < 40, "{busiest} checks in one minute");
}

// ----------------------------------------------------------------------------------------------
// The update lives in its states
// ----------------------------------------------------------------------------------------------

/// What the machine acts on in each phase of an update is the record that goes to disk, and it
/// is gone (from the state and from disk) once the phase is over.
#[test]
fn the_update_lives_in_the_states_that_act_on_it() {
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    let State::Downloading { update: u, .. } = &r.m.state else {
        panic!("{}", r.m.phase())
    };
    assert_eq!((u.version, u.next), (new_version(), 0));
    assert_eq!(r.m.status().target_version, Some(new_version()));
    // A failed download backs off holding the same update, resumed where it stopped.
    r.send(cut(FailureClass::Connect, 7));
    let State::Backoff {
        retry: Retry::Download(u),
        ..
    } = &r.m.state
    else {
        panic!("{}", r.m.phase())
    };
    assert_eq!((u.next, u.resume_from, u.attempts), (0, 7, 1));
    assert_eq!(r.m.status().target_version, Some(new_version()));
    r.tick();
    r.send(got("CPE.cat", 100));
    r.send(got("CPE.nbt", 5000));
    let State::WaitingIdle { staged, .. } = &r.m.state else {
        panic!("{}", r.m.phase())
    };
    assert_eq!(Some(staged), r.m.persisted().install.as_ref());
    // A power cut here: the new machine acts on the marker it read back.
    let saved = r.m.persisted().clone();
    let mut r = Rig::new(config(|_| {}), saved.clone());
    let State::WaitingIdle { staged, .. } = &r.m.state else {
        panic!("{}", r.m.phase())
    };
    assert_eq!(Some(staged), saved.install.as_ref());
    let a = r.tick();
    let [Action::Install { version, files }] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!((*version, files), (new_version(), &staged_files(&saved)));
    assert!(matches!(r.m.state, State::Installing { .. }));
    r.send(Event::InstallDone(Ok(())));
    assert!(matches!(r.m.state, State::Rebooting { .. }));
    assert_eq!(r.m.persisted().install, None);
    assert_eq!(r.m.status().target_version, None);
}

fn staged_files(state: &PersistedState) -> Vec<OfferedFile> {
    state.install.as_ref().map(|m| m.files.clone()).unwrap()
}

/// A check answered with `o`, from a machine in `cfg` that has `state`.
fn offered(cfg: Arc<MachineConfig>, state: PersistedState, o: Offer) -> (Rig, Vec<Action>) {
    let mut r = Rig::new(cfg, state);
    r.tick_at(0);
    let a = r.send(Event::CheckDone(Ok(CheckResponse::Update(o))));
    (r, a)
}

#[test]
fn files_on_another_origin_than_the_check_are_refused_once_until_the_next_poll() {
    // The attack of issue 12: a rogue reply names its own file server.
    let mut o = offer(new_version());
    o.base_url = "http://127.0.0.1:18081/evil".into();
    let (mut r, a) = offered(config(|_| {}), PersistedState::new(old()), o.clone());
    assert!(a.is_empty(), "nothing downloaded, nothing persisted: {a:?}");
    let s = r.m.status();
    assert_eq!(
        s.last_outcome,
        Some(CheckOutcome::Refused(OfferRefusal::ForeignOrigin))
    );
    assert_eq!(
        s.last_outcome.unwrap().to_string(),
        "offer refused: file origin not allowed"
    );
    assert_eq!((s.phase, s.consecutive_failures), (Phase::Idle, 0));
    // Not retried in a loop: the next request is the regular check a poll interval later.
    assert_eq!(names(&r.tick_at(DAY)), ["check"]);
    // The same origin listed in `allowed_file_origins` is accepted (anonymously).
    let cfg = config(|c| {
        c.offer_policy.allowed_file_origins =
            vec![Origin::of(&"http://127.0.0.1:18081/".parse().unwrap())];
    });
    let (_, a) = offered(cfg, PersistedState::new(old()), o);
    let (url, _, _, ext) = download_of(&a[1]);
    assert_eq!(
        (url.as_str(), ext),
        ("http://127.0.0.1:18081/evil/CPE.cat", false)
    );
}

#[test]
fn an_external_check_refuses_files_on_the_internal_origin() {
    let cfg = config(|c| {
        c.outside_firewall = Some(true);
        c.external_server_url = Some(EXTERNAL.into());
    });
    let mut o = offer(new_version());
    o.external_base_url = String::new();
    let (r, a) = offered(cfg, PersistedState::new(old()), o);
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(
        r.m.status().last_outcome,
        Some(CheckOutcome::Refused(OfferRefusal::ForeignOrigin))
    );
}

#[test]
fn declared_sizes_over_the_limits_are_refused_and_an_earlier_partial_is_dropped() {
    let limits = |c: &mut MachineConfig| {
        c.offer_policy.max_file_bytes = 4000;
        c.offer_policy.max_offer_bytes = 4500;
    };
    // The image declares 5000 bytes: more than one file may be.
    let (r, a) = offered(
        config(limits),
        PersistedState::new(old()),
        offer(new_version()),
    );
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(
        r.m.status().last_outcome,
        Some(CheckOutcome::Refused(OfferRefusal::FileTooLarge))
    );
    // Two files that each fit but not together.
    let mut o = offer(new_version());
    o.files[1].size = Some(4000);
    o.files[0].size = Some(600);
    let (r, _) = offered(config(limits), PersistedState::new(old()), o.clone());
    assert_eq!(
        r.m.status().last_outcome,
        Some(CheckOutcome::Refused(OfferRefusal::OfferTooLarge))
    );
    // A half download of this offer from before is forgotten, so the driver removes its bytes.
    let mut state = PersistedState::new(old());
    state.download = Some(Box::new(PartialDownload {
        version: new_version(),
        url: "http://pool.contoso.com/x/CPE.nbt".into(),
        file: FileName::new("CPE.nbt").unwrap(),
        completed: 0,
        bytes: 3000,
    }));
    let (_, a) = offered(config(limits), state, o);
    let [Action::Persist(s)] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!(s.download, None);
}

// ----------------------------------------------------------------------------------------------
// Catalogs and the anti-rollback floor (issue 12, rules 1-2)
// ----------------------------------------------------------------------------------------------

fn catalog_says(verdict: CatalogVerdict) -> Event {
    Event::DownloadDone(Ok(DownloadedFile {
        file_name: FileName::new("CPE.cat").unwrap(),
        size: 100,
        sha256: None,
        catalog: verdict,
    }))
}

/// The offer is refused with `kind`, nothing more is fetched, and the next request is the
/// regular check a poll interval later (counted once, never a tight loop).
fn assert_untrusted(r: &mut Rig, a: &[Action], kind: RefusalKind) {
    assert!(
        a.iter().all(|a| !matches!(a, Action::Download { .. })),
        "{a:?}"
    );
    let s = r.m.status();
    assert_eq!(s.last_outcome, Some(CheckOutcome::Untrusted(kind)));
    assert_eq!(r.m.phase(), Phase::Idle);
    assert_eq!(r.m.persisted().download, None);
    assert_eq!(r.m.persisted().install, None);
    let at = r.now.0 + DAY;
    assert_eq!(names(&r.tick_at(at)), ["check"]);
}

#[test]
fn an_offer_without_a_catalog_is_refused_before_any_download() {
    let mut o = offer(new_version());
    o.files.retain(|f| f.kind != FileKind::Catalog);
    let (mut r, a) = offered(config(|_| {}), PersistedState::new(old()), o);
    assert_untrusted(&mut r, &a, RefusalKind::Unsigned);
    assert_eq!(r.m.status().last_outcome.unwrap().code(), 0x3);
}

#[test]
fn a_catalog_that_does_not_verify_stops_the_update_before_the_image() {
    use crate::trust::Refusal;
    for (refusal, code) in [
        (Refusal::BadSignature("tampered"), 0x3),
        (Refusal::UnknownSigner("another CA".into()), 0x2),
        (Refusal::NotCodeSigning, 0x2),
        (Refusal::Expired("2019".into()), 0x2),
        (Refusal::NotInCatalog("CPE.nbt".into()), 0x4),
        (Refusal::NoAnchors, 0x2),
    ] {
        let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
        r.tick_at(0);
        r.send(update(new_version()));
        let kind = refusal.kind();
        let a = r.send(catalog_says(CatalogVerdict::Refused(refusal)));
        assert_untrusted(&mut r, &a, kind);
        let text = r.m.status().last_outcome.unwrap().to_string();
        assert!(
            text.starts_with(&format!("update refused (0x{code:x})")),
            "{text}"
        );
    }
    // A device that was not asked to skip verification refuses an unchecked catalog.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    let a = r.send(catalog_says(CatalogVerdict::NotChecked));
    assert_untrusted(&mut r, &a, RefusalKind::NoAnchors);
}

#[test]
fn the_catalog_digest_must_agree_with_the_reply_and_sha1_listings_reach_the_download() {
    use crate::trust::ListedDigest;
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    let a = r.send(catalog_says(CatalogVerdict::Listed(ListedDigest::Sha256(
        [9; 32],
    ))));
    assert_untrusted(&mut r, &a, RefusalKind::DigestMismatch);
    // A legacy catalog's SHA-1 listing goes with the image download.
    let mut r = Rig::new(config(|_| {}), PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    let a = r.send(catalog_says(CatalogVerdict::Listed(ListedDigest::Sha1(
        [7; 20],
    ))));
    let Some(Action::Download {
        file, expect_sha1, ..
    }) = a.last()
    else {
        panic!("{a:?}")
    };
    assert_eq!(
        (file.file_name.as_str(), *expect_sha1),
        ("CPE.nbt", Some([7; 20]))
    );
    // With verification off (the simulator's `--trust none`) an unchecked catalog passes.
    let cfg = config(|c| c.offer_policy.require_catalog = false);
    let mut r = Rig::new(cfg, PersistedState::new(old()));
    r.tick_at(0);
    r.send(update(new_version()));
    let a = r.send(catalog_says(CatalogVerdict::NotChecked));
    assert_eq!(download_of(a.last().unwrap()).1, "CPE.nbt");
}

#[test]
fn the_floor_refuses_older_offers_below_it_but_allows_a_restore_above_it() {
    let floor = v("2.0.0.0");
    let cfg = config(|c| c.offer_policy.min_version = Some(floor));
    let current = v("3.0.0.0");
    // A restore to an older version above the floor is legitimate.
    let (_, a) = offered(
        cfg.clone(),
        PersistedState::new(current),
        offer(v("2.5.0.0")),
    );
    assert_eq!(names(&a), ["persist", "download"]);
    // Below the floor: refused, nothing fetched.
    let (mut r, a) = offered(cfg, PersistedState::new(current), offer(v("1.9.9.9")));
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(
        r.m.status().last_outcome,
        Some(CheckOutcome::Refused(OfferRefusal::BelowFloor))
    );
    assert_eq!(names(&r.tick_at(DAY)), ["check"]);
}
