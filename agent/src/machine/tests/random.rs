//! Random drivers: whatever happens, in whatever order, the invariants hold.

use proptest::prelude::*;

use super::*;

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
