//! Failures and back-off: every failure class capped per hour, DNS, watchdog, external checks.

use super::*;

#[test]
fn back_off_caps_requests_per_hour_on_every_failure_class() {
    // A hash mismatch is a download failure: it has its own test (`update`).
    let classes = CLASSES
        .iter()
        .copied()
        .filter(|c| *c != FailureClass::HashMismatch);
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
