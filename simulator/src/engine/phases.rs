//! Scenario phases and the server set-up before a run: a phase either scripts device events
//! (power-on, sign-in...) spread over its window with each device's own dice, or changes the
//! server through the [`Admin`] interface (publish, approve, restore, reset).

use ucupdate_agent::machine::Event;
use ucupdate_protocol::{FileName, FirmwareVersion};

use super::device::Script;
use super::queue::vtime;
use super::{Engine, EngineError};
use crate::admin::{synthetic_file, AdminOp};
use crate::fleet::{splitmix64, unit};
use crate::profile::Profile;
use crate::scenario::PhaseAction;

impl Engine {
    /// Puts every profile's initial version on the server as approved, and the test devices.
    pub(super) async fn setup(&mut self) -> Result<(), EngineError> {
        let needs_admin = self.cfg.scenario.phases.iter().any(|p| p.action.is_admin());
        if !self.cfg.coordinator || (self.cfg.admin.is_none() && !needs_admin) {
            return Ok(());
        }
        for p in self.profile_keys() {
            let profile = self.profiles[p].clone();
            let files = self.files_for(&profile, profile.initial);
            self.admin(AdminOp::Publish {
                key: profile.key.clone(),
                version: profile.initial,
                files,
                bad_signature: false,
            })
            .await?;
            self.admin(AdminOp::Approve(profile.key.clone())).await?;
        }
        // The whole fleet's test devices, not only this shard's: against a shared server the
        // coordinator is the only shard that administers it.
        let macs: Vec<_> = crate::shared::test_device_macs(&self.cfg.fleet).collect();
        for mac in macs {
            self.admin(AdminOp::AddTestDevice(mac)).await?;
        }
        Ok(())
    }

    pub(super) async fn run_phase(
        &mut self,
        action: &PhaseAction,
        at: u64,
    ) -> Result<(), EngineError> {
        tracing::info!(phase = action.name(), at_ms = at, "scenario phase");
        if self.traced_slot().is_some() {
            let line = format!(
                "{:>14}  {:<12} scenario phase {}",
                vtime(at),
                "-",
                action.name()
            );
            self.trace.push(line);
        }
        match action {
            PhaseAction::PowerOn { window } | PhaseAction::PowerCycle { window } => {
                let cycle = matches!(action, PhaseAction::PowerCycle { .. });
                let window = window.as_millis() as u64;
                for slot in 0..self.devices.len() as u32 {
                    let dev = &mut self.devices[slot as usize];
                    if cycle && dev.machine().is_none() {
                        continue;
                    }
                    dev.rng = splitmix64(dev.rng);
                    let offset = (unit(dev.rng) * window as f64) as u64;
                    if cycle {
                        self.power_off(slot, at);
                    }
                    self.script(slot, Script::PowerOn, at + offset, at);
                }
                // The traced device's timeline says when it comes on.
                if let Some(slot) = self.traced_slot() {
                    self.trace_wait(slot, at);
                }
            }
            PhaseAction::SignIn { window } => {
                let window = window.as_millis() as u64;
                for slot in 0..self.devices.len() as u32 {
                    if !self.spec(slot).signed_in {
                        continue;
                    }
                    let dev = &mut self.devices[slot as usize];
                    dev.rng = splitmix64(dev.rng);
                    let offset = (unit(dev.rng) * window as f64) as u64;
                    self.script(slot, Script::SignIn, at + offset, at);
                }
            }
            PhaseAction::SignOut => {
                for slot in 0..self.devices.len() as u32 {
                    let dev = &mut self.devices[slot as usize];
                    if dev.user_on {
                        dev.user_on = false;
                        if dev.machine().is_some() {
                            self.feed(slot, Event::SignedOut, at);
                            self.after(slot, at);
                        }
                    }
                }
            }
            PhaseAction::Publish { bad_signature } => {
                for p in self.profile_keys() {
                    let profile = self.profiles[p].clone();
                    let files = self.files_for(&profile, profile.target());
                    self.admin(AdminOp::Publish {
                        key: profile.key.clone(),
                        version: profile.target(),
                        files,
                        bad_signature: *bad_signature,
                    })
                    .await?;
                }
            }
            PhaseAction::Approve | PhaseAction::Restore | PhaseAction::Reset => {
                for p in self.profile_keys() {
                    let key = self.profiles[p].key.clone();
                    let op = match action {
                        PhaseAction::Approve => AdminOp::Approve(key),
                        PhaseAction::Restore => AdminOp::Restore(key),
                        _ => AdminOp::Reset(key),
                    };
                    self.admin(op).await?;
                }
            }
        }
        Ok(())
    }

    /// The profiles the fleet's mix uses, each once.
    fn profile_keys(&self) -> Vec<usize> {
        let mut used: Vec<usize> = self
            .cfg
            .fleet
            .mix
            .0
            .iter()
            .map(|&(p, _)| p as usize)
            .collect();
        used.sort_unstable();
        used.dedup();
        used
    }

    /// Applies `op` on the coordinator; on the other shards of a shared server the phase only
    /// marks its virtual time (for the convergence clock and the reports), since the
    /// coordinator makes the change at that instant of the common clock.
    async fn admin(&self, op: AdminOp) -> Result<(), EngineError> {
        if !self.cfg.coordinator {
            return Ok(());
        }
        let name = op.name();
        let Some(admin) = &self.cfg.admin else {
            return Err(EngineError::NoAdmin {
                scenario: self.cfg.scenario.name.clone(),
                phase: name,
            });
        };
        admin
            .apply(op)
            .await
            .map_err(|reason| EngineError::Admin { op: name, reason })
    }

    /// The files a profile's `version` is published with: its image and a catalog.
    fn files_for(
        &self,
        profile: &Profile,
        version: FirmwareVersion,
    ) -> Vec<(FileName, bytes::Bytes)> {
        let image_size = self.cfg.scenario.fleet.image_size;
        let catalog =
            FileName::new(&format!("{}.cat", profile.image.stem())).expect("catalog name");
        vec![
            (
                profile.image.clone(),
                synthetic_file(profile.name, version, image_size),
            ),
            (
                catalog,
                synthetic_file(&format!("{}.cat", profile.name), version, 512),
            ),
        ]
    }
}
