//! The virtual device: the agent's own [`Machine`] plus a few words of simulator state (power,
//! the scripted events of scenario phases, simulated user activity, the version it runs), and
//! how the engine feeds it events and drains its actions.

use std::sync::Arc;

use ucupdate_agent::hash::fnv1a_extend;
use ucupdate_agent::machine::{
    Event, FailureClass, Instant, Machine, PersistedState, Phase, ProvisionedUrls, Waiting,
};
use ucupdate_agent::perform::InFlight;

use super::metrics::{phase_label, Metric, OFF};
use super::queue::{vtime, NEVER};
use super::Engine;
use crate::fleet::{splitmix64, unit, DeviceSpec};

/// Scripted device events (from scenario phases and reboots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Script {
    None,
    PowerOn,
    SignIn,
}

/// A device's machine, or what it persisted when it went off: one or the other, so a device
/// pays for one of them (an `Option` of each cost 8 B more). The machine stays inline: boxing
/// it would add a heap chunk to every device that is on, which is nearly all of them.
#[allow(clippy::large_enum_variant)]
pub(super) enum Power {
    /// Off; `None` until it was first on.
    Off(Option<Box<PersistedState>>),
    On(Machine),
}

/// One virtual device: the agent's machine plus simulator bookkeeping. Every device of a
/// fleet pays for this inline, so it stays small (see the size test below).
pub(super) struct Device {
    /// The machine while the device is on; off, the state it comes back with.
    pub power: Power,
    /// The instant this device is queued for (`NEVER`: not queued).
    pub wake: u64,
    pub script_at: u64,
    pub script: Script,
    pub activity_at: u64,
    pub phase_since: u64,
    pub rng: u64,
    /// The version it runs, as the rollout curve and the verdicts need it: is it the profile's
    /// target, is it its initial version (the version itself is the machine's, or `saved`'s).
    pub on_target: bool,
    pub on_initial: bool,
    /// Last time the device changed to its expected final version (`NEVER`: not on it).
    pub final_at: u64,
    /// Checks the server answered (an offer, "no update", or a 401 denial): a check that
    /// failed on the way is not a check the scenario can count on.
    pub checks: u32,
    pub denied: u32,
    pub boots: u16,
    pub phase: u8,
    /// The work the machine asked for that is still out, per kind.
    pub work: InFlight,
    pub user_on: bool,
    pub visited_target: bool,
    pub ever_on: bool,
    /// The device's version is counted in the rollout curve.
    pub counted: bool,
}

impl Device {
    pub fn machine(&self) -> Option<&Machine> {
        match &self.power {
            Power::On(m) => Some(m),
            Power::Off(_) => None,
        }
    }

    pub fn machine_mut(&mut self) -> Option<&mut Machine> {
        match &mut self.power {
            Power::On(m) => Some(m),
            Power::Off(_) => None,
        }
    }

    pub fn new(spec: &DeviceSpec) -> Device {
        Device {
            power: Power::Off(None),
            wake: NEVER,
            script_at: NEVER,
            script: Script::None,
            activity_at: NEVER,
            phase_since: 0,
            rng: splitmix64(spec.seed ^ 0xac71),
            on_target: false,
            on_initial: true,
            final_at: NEVER,
            checks: 0,
            denied: 0,
            boots: 0,
            phase: OFF as u8,
            work: InFlight::new(),
            user_on: false,
            visited_target: false,
            ever_on: false,
            counted: false,
        }
    }

    /// The machine's deadline counts only while no request is out: a request's answer comes at
    /// its modelled virtual instant, and the watchdog must not beat it to it in wall time.
    fn machine_wake(&self) -> u64 {
        match self.machine() {
            Some(m) if !self.work.awaiting_network() => {
                m.poll_timeout().map(|i| i.as_millis()).unwrap_or(NEVER)
            }
            _ => NEVER,
        }
    }
}

impl Engine {
    pub(super) fn spec(&self, slot: u32) -> DeviceSpec {
        DeviceSpec::derive(
            self.cfg.shard.index + u64::from(slot) * self.cfg.shard.count,
            &self.cfg.fleet,
        )
    }

    pub(super) fn wake_device(&mut self, slot: u32, t: u64) {
        let dev = &mut self.devices[slot as usize];
        if dev.script_at <= t {
            let script = dev.script;
            dev.script = Script::None;
            dev.script_at = NEVER;
            self.run_script(slot, script, t);
        }
        let dev = &mut self.devices[slot as usize];
        if dev.activity_at <= t {
            dev.activity_at = NEVER;
            if dev.machine().is_some() {
                self.feed(slot, Event::UserActivity, t);
            }
        }
        let dev = &mut self.devices[slot as usize];
        let waiting = dev.work.awaiting_network();
        if let Some(m) = dev.machine_mut() {
            if m.poll_timeout().is_some_and(|d| d.as_millis() <= t) && !waiting {
                m.handle_timeout(Instant::from_millis(t));
            }
        }
        self.drain(slot, t);
    }

    fn run_script(&mut self, slot: u32, script: Script, t: u64) {
        match script {
            Script::None => {}
            Script::PowerOn => self.power_on(slot, t),
            Script::SignIn => {
                let spec = self.spec(slot);
                let user = spec.user(&self.cfg.user_domain);
                let dev = &mut self.devices[slot as usize];
                dev.user_on = true;
                if dev.machine().is_some() {
                    let provisioning = Some(self.provisioning.clone());
                    self.feed(slot, Event::SignedIn { user, provisioning }, t);
                }
            }
        }
    }

    /// Schedules a scripted event; an earlier one still pending is carried out first.
    pub(super) fn script(&mut self, slot: u32, script: Script, at: u64, now: u64) {
        let dev = &self.devices[slot as usize];
        if dev.script != Script::None {
            let old = dev.script;
            self.devices[slot as usize].script = Script::None;
            self.devices[slot as usize].script_at = NEVER;
            self.run_script(slot, old, now);
            self.drain(slot, now);
        }
        let dev = &mut self.devices[slot as usize];
        dev.script = script;
        dev.script_at = at;
        self.requeue(slot);
    }

    fn power_on(&mut self, slot: u32, t: u64) {
        let spec = self.spec(slot);
        let profile = &self.profiles[spec.profile as usize];
        let initial = profile.initial;
        let dev = &mut self.devices[slot as usize];
        // A power-on of a device that is on starts it afresh, as from a factory reset.
        let state = match std::mem::replace(&mut dev.power, Power::Off(None)) {
            Power::Off(Some(s)) => *s,
            Power::Off(None) | Power::On(_) => {
                let mut s = PersistedState::new(initial);
                if spec.external {
                    // Outside the firewall the internal name does not resolve: these devices
                    // were provisioned at an earlier sign-in inside.
                    s.ever_signed_in = true;
                    s.provisioning =
                        Some(Box::new(ProvisionedUrls::from(self.provisioning.clone())));
                }
                s
            }
        };
        let config = Arc::clone(&self.configs[usize::from(spec.external)]);
        let seed = splitmix64(spec.seed ^ u64::from(dev.boots).wrapping_mul(0x51_7cc1_b727_220a));
        dev.power = Power::On(Machine::new(config, state, seed, Instant::from_millis(t)));
        dev.ever_on = true;
        let boots = self.devices[slot as usize].boots;
        self.trace_line(slot, t, format_args!("power-on (boot {boots})"));
        self.feed(
            slot,
            Event::WallClock {
                unix_ms: self.cfg.start_unix_ms + t,
            },
            t,
        );
        let signs_in_now =
            self.devices[slot as usize].user_on || (spec.signed_in && !self.sign_in_phase);
        if signs_in_now {
            self.devices[slot as usize].user_on = true;
            let user = spec.user(&self.cfg.user_domain);
            let provisioning = Some(self.provisioning.clone());
            self.feed(slot, Event::SignedIn { user, provisioning }, t);
        }
        self.track_version(slot, t);
    }

    pub(super) fn power_off(&mut self, slot: u32, t: u64) {
        let dev = &mut self.devices[slot as usize];
        if let Power::On(m) = &dev.power {
            dev.power = Power::Off(Some(Box::new(m.persisted().clone())));
        }
        dev.boots = dev.boots.wrapping_add(1);
        dev.activity_at = NEVER;
        // What was out answers nobody now; the next machine starts with nothing in flight.
        dev.work.cancel_all();
        self.set_phase(slot, OFF, t);
    }

    pub(super) fn feed(&mut self, slot: u32, event: Event, t: u64) {
        self.trace_line(slot, t, format_args!("event  {event}"));
        let dev = &mut self.devices[slot as usize];
        match &event {
            Event::CheckDone(Ok(_)) => dev.checks += 1,
            Event::CheckDone(Err(FailureClass::Unauthorized)) => {
                dev.denied += 1;
                dev.checks += 1;
            }
            _ => {}
        }
        let Some(m) = dev.machine_mut() else {
            return;
        };
        if let Err(e) = m.handle(event, Instant::from_millis(t)) {
            self.metrics.record(Metric::MachineRefused);
            self.trace_line(slot, t, format_args!("machine refused: {e}"));
        }
        self.drain(slot, t);
    }

    /// Performs everything the machine asked for.
    pub(super) fn drain(&mut self, slot: u32, t: u64) {
        loop {
            let Some(m) = self.devices[slot as usize].machine_mut() else {
                return;
            };
            let Some(action) = m.poll_action() else { break };
            self.trace_line(slot, t, format_args!("action {action}"));
            self.perform(slot, action, t);
        }
    }

    /// Book-keeping after a device was served: phase time, version, activity, its next wake.
    pub(super) fn after(&mut self, slot: u32, t: u64) {
        let phase = match self.devices[slot as usize].machine() {
            Some(m) => m.phase().index(),
            None => OFF,
        };
        self.set_phase(slot, phase, t);
        self.track_version(slot, t);
        let mean = self.cfg.scenario.activity.mean_interval.as_millis() as f64;
        let busy_share = self.cfg.scenario.activity.busy_share;
        let dev = &mut self.devices[slot as usize];
        let waiting = phase == Phase::WaitingIdle.index();
        if waiting && dev.activity_at == NEVER && mean > 0.0 {
            dev.rng = splitmix64(dev.rng);
            // Only busy devices have someone to touch them.
            if unit(splitmix64(dev.rng ^ 0xb05e)) < busy_share {
                let u = unit(dev.rng).max(1e-12);
                dev.activity_at = t + (-u.ln() * mean) as u64;
            }
        } else if !waiting {
            dev.activity_at = NEVER;
        }
        self.requeue(slot);
        self.trace_wait(slot, t);
    }

    /// The traced device's timeline says what it waits for each time that changes, in the
    /// machine's own words ([`Machine::waiting`]): a device that goes quiet (no route to the
    /// server, a back-off, an install waiting for idle) shows why and until when. Work in
    /// flight is left out: the action line above it names what is awaited. Not part of the
    /// digests: only the traced device pays for it.
    pub(super) fn trace_wait(&mut self, slot: u32, t: u64) {
        if self.traced_slot() != Some(slot) {
            return;
        }
        let dev = &self.devices[slot as usize];
        let text = match dev.machine() {
            Some(m) => match m.waiting() {
                Waiting::Answer { .. } => return,
                waiting => waiting.to_string(),
            },
            None if dev.script == Script::PowerOn => {
                format!("power: the device is off until {}", vtime(dev.script_at))
            }
            None => "power: the device is off (no power-on is scheduled)".to_owned(),
        };
        if text == self.traced_wait {
            return;
        }
        let phase = phase_label(dev.phase as usize);
        self.trace
            .push(format!("{:>14}  {phase:<12} wait   {text}", vtime(t)));
        self.traced_wait = text;
    }

    pub(super) fn requeue(&mut self, slot: u32) {
        let dev = &mut self.devices[slot as usize];
        let wake = dev.machine_wake().min(dev.script_at).min(dev.activity_at);
        if wake != dev.wake {
            dev.wake = wake;
            if wake != NEVER {
                self.queues.wake(slot, wake);
            }
        }
    }

    fn set_phase(&mut self, slot: u32, phase: usize, t: u64) {
        let dev = &mut self.devices[slot as usize];
        let old = dev.phase as usize;
        if old == phase {
            return;
        }
        let spent = dev.ever_on.then(|| t.saturating_sub(dev.phase_since));
        dev.phase = phase as u8;
        dev.phase_since = t;
        self.metrics.record(Metric::Phase {
            from: old,
            to: phase,
            spent,
        });
    }

    fn track_version(&mut self, slot: u32, t: u64) {
        let Some(current) = self.devices[slot as usize]
            .machine()
            .map(|m| m.persisted().current_version)
        else {
            return;
        };
        let spec = self.spec(slot);
        let profile = &self.profiles[spec.profile as usize];
        let (initial, target) = (profile.initial, profile.target());
        let expected = self.expected_final(&spec);
        let dev = &mut self.devices[slot as usize];
        let now = (current == target, current == initial);
        // Only the class counts: a move between two versions that are neither the target nor
        // the initial one changes no curve, and `expected` is always one of those two.
        if dev.counted && (dev.on_target, dev.on_initial) == now {
            return;
        }
        let was = dev.counted.then_some((dev.on_target, dev.on_initial));
        dev.counted = true;
        (dev.on_target, dev.on_initial) = now;
        dev.visited_target |= now.0;
        dev.final_at = if current == expected { t } else { NEVER };
        self.metrics.record(Metric::Version { t, was, now });
    }

    /// The slot of the traced device, if this engine runs it.
    pub(super) fn traced_slot(&self) -> Option<u32> {
        let index = self.cfg.trace_device?;
        let shard = self.cfg.shard;
        (index % shard.count == shard.index).then(|| ((index - shard.index) / shard.count) as u32)
    }

    /// One line of a device's timeline: kept for the traced device, hashed into the digest
    /// of every device when digests are collected.
    pub(super) fn trace_line(&mut self, slot: u32, t: u64, text: std::fmt::Arguments<'_>) {
        let index = self.cfg.shard.index + u64::from(slot) * self.cfg.shard.count;
        let traced = self.cfg.trace_device == Some(index);
        if !traced && !self.cfg.collect_digests {
            return;
        }
        let phase = phase_label(self.devices[slot as usize].phase as usize);
        let line = format!("{:>14}  {phase:<12} {text}", vtime(t));
        if self.cfg.collect_digests {
            // The server's ports differ between runs; the sequence is what must not.
            let mut scrubbed =
                line.replace(&format!(":{}/", self.cfg.target.internal.port), ":<port>/");
            if let Some(external) = &self.cfg.target.external {
                scrubbed = scrubbed.replace(&format!(":{}/", external.port), ":<port-ext>/");
            }
            let digest = &mut self.digests[slot as usize];
            *digest = fnv1a_extend(*digest, scrubbed.as_bytes());
        }
        if traced {
            self.trace.push(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_device_stays_small() {
        // The fleet-size target is 512 B of RSS per device at 10M devices; the inline part is
        // what every device pays even when its machine holds nothing on the heap, and the
        // machine's own heap (the signed-in user, the provisioned URLs) comes on top: about
        // 150 B for a signed-in device. 376 B before the digest moved out, the version became
        // two flags and the machine and its saved state one enum (docs/BENCHMARKS.md §1).
        let device = std::mem::size_of::<Device>();
        let machine = std::mem::size_of::<Machine>();
        println!("Device {device} bytes (Machine {machine} bytes inline)");
        assert_eq!(std::mem::size_of::<InFlight>(), 6);
        assert!(device <= machine + 72, "Device is {device} bytes");
    }
}
