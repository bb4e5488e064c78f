//! The catalogue and one function per check, run in catalogue order over one shared context.
//! The context does the expensive things once: the admin setup (publish + approve a probe
//! update), finding the approved version and its offer, and downloading the offered files.
//! A check that depends on one of them fails when it failed and skips (saying why) when it
//! cannot apply, so one broken piece names the checks it breaks and no more.
//!
//! This file holds the catalogue, the runner and the context's state; the context's methods
//! live in `context` (plumbing, admin, shared results), and the checks by area in `offers`,
//! `external`, `rules` and `hostile`.

mod catalog;
mod context;
mod external;
mod hostile;
#[cfg(test)]
pub(crate) use hostile::store_root as hostile_store_root;
mod offers;
mod rules;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, Method, StatusCode};
use ucupdate_agent::clock;
use ucupdate_agent::hash::{splitmix64, FNV_PRIME, SPLITMIX_GAMMA};
use ucupdate_agent::net::{self, ClientSettings, Credentials, DownloadSink, TlsOptions};
use ucupdate_protocol::url::percent_encode;
use ucupdate_protocol::wire::CONTENT_TYPE_XML;
use ucupdate_protocol::{
    CheckRequest, CheckResponse, FileKind, FileName, FirmwareVersion, HttpUrl, InstalledModule,
    MacAddress, Offer, OfferStatus, OfferedFile, UpdateKey,
};

use super::raw::{self, Reply};
use super::{CheckResult, Options, Outcome, ProbeDevice};

/// One entry of the catalogue.
pub(crate) struct Spec {
    pub name: &'static str,
    pub description: &'static str,
    id: Id,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id {
    CheckAccepted,
    UnknownElements,
    NoUpdateOnApproved,
    OfferWhenBehind,
    OfferWhenAhead,
    OfferedUrlsResolve,
    DownloadsNotEmpty,
    NbtContentType,
    SizeAndHash,
    RangeRequests,
    CatalogOffered,
    CatalogVerifies,
    CatalogListsImage,
    ExternalAnonymous,
    ExternalWrongPassword,
    ExternalSameConnection,
    ExternalFreshType3,
    ExternalDownload,
    TestDevicePending,
    RegularDeviceApproved,
    ApproveTransition,
    RestoreTransition,
    ResetTransition,
    MalformedBodies,
    OversizedBody,
    PathTraversal,
}

const fn spec(id: Id, name: &'static str, description: &'static str) -> Spec {
    Spec {
        name,
        description,
        id,
    }
}

/// The catalogue, in run order. Names are a public contract: never rename one.
pub(crate) const CHECKS: &[Spec] = &[
    spec(
        Id::CheckAccepted,
        "check-accepted",
        "a well-formed update check gets 200 and a reply that decodes",
    ),
    spec(
        Id::UnknownElements,
        "unknown-elements-tolerated",
        "a check with unknown elements and attributes is still answered with 200",
    ),
    spec(
        Id::NoUpdateOnApproved,
        "no-update-on-approved",
        "a device already on the approved version gets downloads=0",
    ),
    spec(
        Id::OfferWhenBehind,
        "offer-when-behind",
        "a device on an older version is offered the approved version",
    ),
    spec(
        Id::OfferWhenAhead,
        "offer-when-ahead",
        "a device on a newer version is offered the (older) approved version",
    ),
    spec(
        Id::OfferedUrlsResolve,
        "offered-urls-resolve",
        "every file under the offer's BaseURL answers GET with 200",
    ),
    spec(
        Id::DownloadsNotEmpty,
        "downloads-not-empty",
        "every offered file downloads with a non-empty body",
    ),
    spec(
        Id::NbtContentType,
        "nbt-content-type",
        "the .nbt image is served as application/octet-stream (the IIS MIME-mapping failure)",
    ),
    spec(
        Id::SizeAndHash,
        "size-and-hash-match",
        "downloaded files match the Size and SHA256 the offer gives",
    ),
    spec(
        Id::RangeRequests,
        "range-requests",
        "Range requests on the image get 206 with the right Content-Range and bytes",
    ),
    spec(
        Id::CatalogOffered,
        "catalog-offered",
        "the offer names a .cat catalog beside its image (--trust)",
    ),
    spec(
        Id::CatalogVerifies,
        "catalog-verifies",
        "the offered catalog downloads and verifies against the --trust anchors",
    ),
    spec(
        Id::CatalogListsImage,
        "catalog-lists-image",
        "the verified catalog lists the image under its file name with its SHA-256 (--trust)",
    ),
    spec(
        Id::ExternalAnonymous,
        "external-anonymous-401",
        "an anonymous external check gets 401 with WWW-Authenticate: NTLM",
    ),
    spec(
        Id::ExternalWrongPassword,
        "external-wrong-password-401",
        "an NTLM handshake with a wrong password ends in 401",
    ),
    spec(
        Id::ExternalSameConnection,
        "external-ntlm-same-connection",
        "anonymous 401, Type 1 -> 401 + Type 2, Type 3 -> 200, on one kept-alive connection",
    ),
    spec(
        Id::ExternalFreshType3,
        "external-type3-fresh-connection-refused",
        "a valid Type 3 sent on a fresh connection (not the Type 1's) is refused with 401",
    ),
    spec(
        Id::ExternalDownload,
        "external-download-ntlm",
        "the image under ExternalBaseURL needs NTLM and downloads with it",
    ),
    spec(
        Id::TestDevicePending,
        "test-device-gets-pending",
        "a test device is offered the pending version (admin)",
    ),
    spec(
        Id::RegularDeviceApproved,
        "regular-device-gets-approved",
        "a regular device is offered the approved version, never the pending one (admin)",
    ),
    spec(
        Id::ApproveTransition,
        "approve-transition",
        "after approve, regular devices are offered the new version (admin)",
    ),
    spec(
        Id::RestoreTransition,
        "restore-transition",
        "after restore, devices on the new version are offered the restore version (admin)",
    ),
    spec(
        Id::ResetTransition,
        "reset-transition",
        "after reset, test devices are no longer offered the cancelled pending version (admin)",
    ),
    spec(
        Id::MalformedBodies,
        "malformed-body-refused",
        "malformed check bodies get 4xx and the server keeps serving",
    ),
    spec(
        Id::OversizedBody,
        "oversized-body-refused",
        "a check body over the size cap gets 4xx and the server keeps serving",
    ),
    spec(
        Id::PathTraversal,
        "path-traversal-refused",
        "file paths with .., %2e%2e or backslashes get 4xx and the server keeps serving",
    ),
];

/// Longest a single check may take (a real pool may be slow; a hung one must not hang CI).
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Size of the probe image the suite publishes: not a round number, so off-by-one range
/// arithmetic shows.
const PROBE_IMAGE_BYTES: usize = 128 * 1024 + 17;

/// Why a check did not pass.
#[derive(Debug, Clone)]
enum Stop {
    Fail(String),
    Skip(String),
}

impl From<String> for Stop {
    fn from(message: String) -> Self {
        Stop::Fail(message)
    }
}

type Verdict = Result<String, Stop>;

fn fail<T>(why: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Fail(why.into()))
}

fn skip<T>(why: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Skip(why.into()))
}

pub(crate) async fn run(options: &Options) -> Vec<CheckResult> {
    let mut ctx = Ctx::new(options);
    let mut results = Vec::new();
    for spec in CHECKS {
        let selected = (options.only.is_empty() || options.only.iter().any(|n| n == spec.name))
            && !options.skip.iter().any(|n| n == spec.name);
        if !selected {
            continue;
        }
        let started = clock::monotonic();
        let verdict = match tokio::time::timeout(CHECK_TIMEOUT, ctx.run(spec.id)).await {
            Ok(v) => v,
            Err(_) => fail(format!("no verdict within {} s", CHECK_TIMEOUT.as_secs())),
        };
        let duration = clock::elapsed(started);
        let (outcome, detail) = match verdict {
            Ok(detail) => (Outcome::Pass, detail),
            Err(Stop::Fail(detail)) => (Outcome::Fail, detail),
            Err(Stop::Skip(detail)) => (Outcome::Skip, detail),
        };
        tracing::info!(check = spec.name, outcome = outcome.as_str(), %detail, "conformance");
        results.push(CheckResult {
            name: spec.name,
            description: spec.description,
            outcome,
            detail,
            duration,
        });
    }
    results
}

/// Who a probe check claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// The probe identity as given.
    Regular,
    /// The probe with a derived MAC that the admin setup registers as a test device.
    Test,
}

/// Where the admin-driven rule stands; each transition check moves it forward (doing the
/// earlier steps itself when `--only` left their checks out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// V1 approved, nothing pending.
    Baseline,
    /// V2 published: pending.
    V2Pending,
    /// V2 approved; V1 is the restore version.
    V2Approved,
    /// Restored: V1 approved again (a rollback).
    Restored,
    /// V3 published: pending.
    V3Pending,
    /// V3 reset (cancelled).
    Reset,
}

/// The approved version and what a device behind it is offered.
#[derive(Debug, Clone)]
struct Baseline {
    approved: FirmwareVersion,
    offer: Offer,
}

/// One offered file, fetched once with a plain GET.
#[derive(Debug, Clone)]
struct Fetched {
    file: OfferedFile,
    url: HttpUrl,
    reply: Result<Reply, String>,
}

struct Ctx<'a> {
    opts: &'a Options,
    tls: Result<Arc<rustls::ClientConfig>, String>,
    client: net::Client,
    baseline: Option<Result<Baseline, Stop>>,
    fetched: Option<Result<Vec<Fetched>, Stop>>,
    stage: Option<Stage>,
}

impl<'a> Ctx<'a> {
    fn new(opts: &'a Options) -> Ctx<'a> {
        let tls = match &opts.ca_pem {
            Some(pem) => TlsOptions::with_ca_pem(pem.clone()),
            None => TlsOptions::default(),
        }
        .build()
        .map_err(|e| format!("TLS configuration: {e}"));
        let client = net::Client::with_settings(ClientSettings {
            tls: tls.as_ref().ok().cloned(),
            workstation: "UCCONF".to_owned(),
            user_agent: concat!("ucupdate-conformance/", env!("CARGO_PKG_VERSION")).to_owned(),
            ..ClientSettings::default()
        });
        Ctx {
            opts,
            tls,
            client,
            baseline: None,
            fetched: None,
            stage: None,
        }
    }

    async fn run(&mut self, id: Id) -> Verdict {
        match id {
            Id::CheckAccepted => self.check_accepted().await,
            Id::UnknownElements => self.unknown_elements().await,
            Id::NoUpdateOnApproved => self.no_update_on_approved().await,
            Id::OfferWhenBehind => self.offer_when_behind().await,
            Id::OfferWhenAhead => self.offer_when_ahead().await,
            Id::OfferedUrlsResolve => self.offered_urls_resolve().await,
            Id::DownloadsNotEmpty => self.downloads_not_empty().await,
            Id::NbtContentType => self.nbt_content_type().await,
            Id::SizeAndHash => self.size_and_hash().await,
            Id::RangeRequests => self.range_requests().await,
            Id::CatalogOffered => self.catalog_offered().await,
            Id::CatalogVerifies => self.catalog_verifies().await,
            Id::CatalogListsImage => self.catalog_lists_image().await,
            Id::ExternalAnonymous => self.external_anonymous().await,
            Id::ExternalWrongPassword => self.external_wrong_password().await,
            Id::ExternalSameConnection => self.external_same_connection().await,
            Id::ExternalFreshType3 => self.external_fresh_type3().await,
            Id::ExternalDownload => self.external_download().await,
            Id::TestDevicePending => self.test_device_pending().await,
            Id::RegularDeviceApproved => self.regular_device_approved().await,
            Id::ApproveTransition => self.approve_transition().await,
            Id::RestoreTransition => self.restore_transition().await,
            Id::ResetTransition => self.reset_transition().await,
            Id::MalformedBodies => self.malformed_bodies().await,
            Id::OversizedBody => self.oversized_body().await,
            Id::PathTraversal => self.path_traversal().await,
        }
    }
}

fn who_name(who: Who) -> &'static str {
    match who {
        Who::Regular => "regular",
        Who::Test => "test",
    }
}

/// A Type 3 answering `challenge`, with a client challenge from the ring CSPRNG (the rustls
/// provider's) and the time from the agent's clock module.
fn type3(ntlm: &mut ucupdate_ntlm::Client, challenge: &[u8]) -> Result<String, Stop> {
    let mut client_challenge = [0u8; 8];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut client_challenge)
        .map_err(|_| "no randomness for the NTLM client challenge".to_owned())?;
    let now = ucupdate_ntlm::filetime_from_unix_millis(clock::unix_millis());
    let token = ntlm
        .authenticate(challenge, client_challenge, now)
        .map_err(|e| format!("cannot answer the server's Type 2: {e}"))?;
    Ok(ucupdate_ntlm::to_header(&token))
}

/// A reply in a few words, for details.
pub(crate) fn describe(response: &CheckResponse) -> String {
    match response {
        CheckResponse::NoUpdate => "downloads=0".into(),
        CheckResponse::Update(o) => format!(
            "an offer of {} ({}, {} files)",
            o.version,
            o.status.as_str(),
            o.files.len()
        ),
    }
}

/// `request` with unknown elements (one nested) and unknown attributes added.
pub(crate) fn inject_unknown(request: &str) -> Option<String> {
    let root = "<DeviceUpdateRequest>";
    let Some(at) = request.find(root).map(|at| at + root.len()) else {
        // Another dialect: an element in a namespace of its own, before the root's end tag.
        let close = request.trim_end().rfind("</")?;
        let mut out = request.to_owned();
        out.insert_str(
            close,
            "<FutureField xmlns=\"urn:ucupdate:future\" Kind=\"x\"><Nested>value</Nested></FutureField>",
        );
        return Some(out);
    };
    let mut out = String::with_capacity(request.len() + 200);
    out.push_str(&request[..at]);
    out.push_str("<FutureField Kind=\"x\"><Nested>value</Nested></FutureField>");
    out.push_str(&request[at..].replacen("<Module ", "<Module FutureAttribute=\"1\" ", 1));
    let close = out.rfind("</DeviceUpdateRequest>")?;
    out.insert_str(close, "<VendorExtension/>");
    Some(out)
}

/// The next version in the total order, if any (`1.0.0.1` -> `1.0.0.2`).
pub(crate) fn newer(v: FirmwareVersion) -> Option<FirmwareVersion> {
    let mut p = v.parts();
    let i = p.iter().rposition(|&x| x < u32::MAX)?;
    p[i] += 1;
    p[i + 1..].iter_mut().for_each(|x| *x = 0);
    Some(FirmwareVersion::new(p[0], p[1], p[2], p[3]))
}

/// The previous version in the total order, if any (`1.0.0.1` -> `1.0.0.0`).
pub(crate) fn older(v: FirmwareVersion) -> Option<FirmwareVersion> {
    let mut p = v.parts();
    let i = p.iter().rposition(|&x| x > 0)?;
    p[i] -= 1;
    p[i + 1..].iter_mut().for_each(|x| *x = u32::MAX);
    Some(FirmwareVersion::new(p[0], p[1], p[2], p[3]))
}

/// Deterministic image bytes for a probe version: the same on every run, different per
/// version (so a wrong version's file shows as a hash mismatch).
pub(crate) fn probe_bytes(version: FirmwareVersion, len: usize) -> Bytes {
    let mut state = version
        .parts()
        .iter()
        .fold(0x9e37_79b9_7f4a_7c15u64, |h, &p| {
            (h ^ u64::from(p)).wrapping_mul(FNV_PRIME)
        });
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&splitmix64(state).to_le_bytes());
        state = state.wrapping_add(SPLITMIX_GAMMA);
    }
    out.truncate(len);
    Bytes::from(out)
}
