//! The check half of the cycle: where the check goes (configured, provisioned or discovered
//! internal URL, or the external one), discovery, the switch to the external URL when the
//! internal one looks unreachable from outside the firewall, the check's answer, and the log
//! upload that rides on a successful check.

use std::net::IpAddr;

use ucupdate_protocol::wire::{discovery_name, EXTERNAL_HANDLER_PATH, INTERNAL_HANDLER_PATH};
use ucupdate_protocol::{CheckResponse, HttpUrl};

use super::{
    Action, CheckFailure, CheckOutcome, FailureClass, Instant, LogPolicy, Machine, NoRoute, Retry,
    Route, State,
};

impl Machine {
    pub(super) fn begin_cycle(&mut self, now: Instant) {
        // Each regular cycle re-learns where the device is and re-resolves the name, so a
        // device carried back inside the firewall returns to the internal URL.
        self.outside = false;
        self.discovered = false;
        self.proceed_check(now);
    }

    pub(super) fn proceed_check(&mut self, now: Instant) {
        match self.route() {
            Route::Check { url, external } => {
                self.due = None;
                self.outbox.push_back(Action::Check {
                    url,
                    external,
                    user: self.user.as_deref().map(str::to_owned),
                    current_version: self.persisted.current_version,
                });
                let deadline = now + self.config.request_timeout;
                self.state = State::Checking { external, deadline };
            }
            Route::Resolve { name } => {
                self.outbox.push_back(Action::Resolve { name });
                self.state = State::Discovering {
                    deadline: now + self.config.request_timeout,
                };
            }
            Route::NoServer(why) => {
                self.last_outcome = Some(CheckOutcome::NoServer(why));
                self.go_idle(now);
            }
            Route::BadUrl => self.fail(now, FailureClass::Protocol, Retry::Check),
        }
    }

    pub(super) fn wants_external(&self) -> bool {
        match self.config.outside_firewall {
            Some(outside) => outside,
            None => self.outside || self.internal_source().is_none(),
        }
    }

    /// The internal check URL, by precedence: configured, provisioned, discovered.
    /// `Err(name)` means it must be discovered under `name`.
    ///
    /// Discovery is for a device that was never provisioned: nobody ever signed in, or the
    /// sign-ins carried no update-service properties. In the second case the documentation is
    /// silent; going on with discovery beats never checking again.
    pub(super) fn internal_source(&self) -> Option<Result<&str, String>> {
        let cfg = &self.config;
        if let Some(url) = &cfg.server_url {
            return Some(Ok(url));
        }
        match self.persisted.provisioning.as_deref() {
            Some(p) => p.internal_url.as_deref().filter(|_| p.enabled).map(Ok),
            None => cfg.discovery_domain().and_then(discovery_name).map(Err),
        }
    }

    pub(super) fn external_source(&self) -> Option<&str> {
        if let Some(url) = &self.config.external_server_url {
            return Some(url);
        }
        let p = self.persisted.provisioning.as_deref()?;
        p.external_url.as_deref().filter(|_| p.enabled)
    }

    pub(super) fn route(&self) -> Route {
        // A configured or provisioned URL means what `--server` means in every binary: one
        // without a path is the check handler on that server.
        let parse = |text: &str, external| match HttpUrl::handler(
            text,
            if external {
                EXTERNAL_HANDLER_PATH
            } else {
                INTERNAL_HANDLER_PATH
            },
        ) {
            Ok(url) => Route::Check { url, external },
            Err(_) => Route::BadUrl,
        };
        if self.wants_external() {
            return match self.external_source() {
                Some(url) => parse(url, true),
                // Outside only because nothing inside is known: that is the reason to give.
                None if self.config.outside_firewall.is_none() && !self.outside => {
                    Route::NoServer(self.no_internal_route())
                }
                None => Route::NoServer(NoRoute::NoExternalUrl),
            };
        }
        match self.internal_source() {
            None => Route::NoServer(self.no_internal_route()),
            Some(Ok(url)) => parse(url, false),
            Some(Err(name)) if self.discovered => {
                let scheme = if self.config.discovery_https {
                    "https"
                } else {
                    "http"
                };
                let port = self.config.discovery_port;
                parse(
                    &format!("{scheme}://{name}:{port}{INTERNAL_HANDLER_PATH}"),
                    false,
                )
            }
            Some(Err(name)) => Route::Resolve { name },
        }
    }

    /// Why [`Machine::internal_source`] found nothing.
    fn no_internal_route(&self) -> NoRoute {
        match self.persisted.provisioning.as_deref() {
            Some(p) if !p.enabled => NoRoute::Disabled,
            Some(_) => NoRoute::NoInternalUrl,
            None => NoRoute::Unconfigured,
        }
    }

    /// A failure of the internal path (discovery or check): outside the firewall when it looks
    /// like one and an external URL exists, which is then tried at once; otherwise back off.
    fn internal_failed(&mut self, now: Instant, class: FailureClass) {
        let can_switch = self.config.outside_firewall.is_none()
            && class.suggests_outside()
            && !self.outside
            && self.external_source().is_some();
        if can_switch {
            self.outside = true;
            self.proceed_check(now);
        } else {
            self.fail(now, class, Retry::Check);
        }
    }

    pub(super) fn resolved(&mut self, now: Instant, result: Result<Vec<IpAddr>, FailureClass>) {
        match result {
            Ok(addresses) if !addresses.is_empty() => {
                self.discovered = true;
                self.proceed_check(now);
            }
            Ok(_) => self.internal_failed(now, FailureClass::Dns),
            Err(class) => self.internal_failed(now, class),
        }
    }

    pub(super) fn check_done(
        &mut self,
        now: Instant,
        external: bool,
        result: Result<CheckResponse, CheckFailure>,
    ) {
        self.last_check = Some(now);
        match result {
            Err(class) if !external => self.internal_failed(now, class),
            Err(FailureClass::Unauthorized) if self.user.is_none() => {
                // The documented answer to an external device with nobody signed in: give up
                // until the next regular check instead of prompting or retrying.
                self.last_outcome = Some(CheckOutcome::DeniedNoUser);
                self.last_error = Some(FailureClass::Unauthorized);
                self.go_idle(now);
            }
            Err(class) => self.fail(now, class, Retry::Check),
            Ok(response) => {
                self.failures = 0;
                self.last_error = None;
                self.maybe_upload_log(now);
                match response {
                    CheckResponse::Update(offer)
                        if offer.version != self.persisted.current_version =>
                    {
                        self.last_outcome = Some(CheckOutcome::Offered(offer.version));
                        self.start_update(now, offer, external);
                    }
                    CheckResponse::Update(_) | CheckResponse::NoUpdate => {
                        self.last_outcome = Some(CheckOutcome::NoUpdate);
                        if self.persisted.download.take().is_some() {
                            // The server withdrew what was half downloaded; let the driver
                            // delete it.
                            self.persist();
                        }
                        self.go_idle(now);
                    }
                }
            }
        }
    }

    fn maybe_upload_log(&mut self, now: Instant) {
        let in_flight = self
            .log_started
            .is_some_and(|t| now < t + self.config.request_timeout);
        let due = match self.config.log_upload {
            LogPolicy::Never => false,
            LogPolicy::AfterCheck => true,
            LogPolicy::Daily => self.last_log.is_none_or(|t| {
                now - t
                    >= self
                        .config
                        .poll_interval()
                        .saturating_sub(self.config.poll_jitter())
            }),
        };
        if in_flight || !due {
            return;
        }
        if let Route::Check { url, external } = self.route() {
            self.outbox.push_back(Action::UploadLog { url, external });
            self.log_started = Some(now);
        }
    }
}
