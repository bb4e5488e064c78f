//! Discovery and routing: which URL a check goes to, from DHCP, provisioning or configuration.

use super::*;

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
