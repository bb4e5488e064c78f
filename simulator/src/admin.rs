//! How a run changes what the server offers: the scenario's publish / approve / restore / reset
//! phases and the test-device list go through an [`Admin`]. The embedded server stub is driven
//! in-process; a remote `ucupdate-server` through its admin HTTP API; a real Lync/SfB pool has
//! neither, so scenarios that change rules cannot run against it.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use ucupdate_protocol::{FileName, FirmwareVersion, MacAddress, UpdateKey};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One change to the server's update rules.
#[derive(Debug, Clone)]
pub enum AdminOp {
    /// Import `files` as `version` under `key`: pending (test devices only).
    /// `bad_signature`: publish a catalog whose signature does not verify (a scenario fault).
    Publish {
        key: UpdateKey,
        version: FirmwareVersion,
        files: Vec<(FileName, Bytes)>,
        bad_signature: bool,
    },
    Approve(UpdateKey),
    Restore(UpdateKey),
    Reset(UpdateKey),
    AddTestDevice(MacAddress),
}

impl AdminOp {
    pub fn name(&self) -> &'static str {
        match self {
            AdminOp::Publish { .. } => "publish",
            AdminOp::Approve(_) => "approve",
            AdminOp::Restore(_) => "restore",
            AdminOp::Reset(_) => "reset",
            AdminOp::AddTestDevice(_) => "add-test-device",
        }
    }
}

pub trait Admin: Send + Sync {
    fn apply(&self, op: AdminOp) -> BoxFuture<'_, Result<(), String>>;
}

/// Deterministic synthetic image bytes for a profile's version: the same everywhere, so a
/// remote server, the embedded one and every shard publish identical files.
pub fn synthetic_file(label: &str, version: FirmwareVersion, size: u64) -> Bytes {
    let mut state = crate::fleet::splitmix64(ucupdate_agent::hash::fnv1a(label.as_bytes()))
        ^ version
            .parts()
            .iter()
            .fold(0u64, |h, &p| h.rotate_left(16) ^ u64::from(p));
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        state = crate::fleet::splitmix64(state);
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(size as usize);
    Bytes::from(out)
}
