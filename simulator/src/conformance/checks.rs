//! The catalogue and one function per check, run in catalogue order over one shared context.
//! The context does the expensive things once: the admin setup (publish + approve a probe
//! update), finding the approved version and its offer, and downloading the offered files.
//! A check that depends on one of them fails when it failed and skips (saying why) when it
//! cannot apply, so one broken piece names the checks it breaks and no more.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, Method, StatusCode};
use ucupdate_agent::net::{self, ClientSettings, Credentials, DownloadSink, TlsOptions};
use ucupdate_protocol::url::percent_encode;
use ucupdate_protocol::wire::CONTENT_TYPE_XML;
use ucupdate_protocol::{
    CheckRequest, CheckResponse, FileKind, FileName, FirmwareVersion, HttpUrl, InstalledModule,
    MacAddress, Offer, OfferStatus, OfferedFile, UpdateKey,
};

use super::raw::{self, Reply};
use super::{CheckResult, Options, Outcome, ProbeDevice};
use crate::clock;

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
        let started = clock::now();
        let verdict = match tokio::time::timeout(CHECK_TIMEOUT, ctx.run(spec.id)).await {
            Ok(v) => v,
            Err(_) => fail(format!("no verdict within {} s", CHECK_TIMEOUT.as_secs())),
        };
        let duration = clock::now().saturating_duration_since(started);
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

    // ------------------------------------------------------------------------------------
    // Plumbing
    // ------------------------------------------------------------------------------------

    /// The TLS config when `url` needs one.
    fn tls_for(&self, url: &HttpUrl) -> Result<Option<&Arc<rustls::ClientConfig>>, String> {
        if url.https {
            self.tls.as_ref().map(Some).map_err(Clone::clone)
        } else {
            Ok(None)
        }
    }

    fn device(&self) -> &ProbeDevice {
        &self.opts.device
    }

    fn key(&self) -> UpdateKey {
        UpdateKey::for_device(&self.device().identity, self.device().update_type.clone())
    }

    /// The MAC the admin setup registers as a test device: the probe's (or the default
    /// probe's) with the top bit of the last octet flipped, so it is stable per probe.
    fn test_mac(&self) -> MacAddress {
        let mac = self
            .device()
            .identity
            .mac
            .or(ProbeDevice::default().identity.mac)
            .unwrap_or(MacAddress::new([0x02, 0x55, 0x43, 0, 0, 1]));
        let mut octets = mac.octets();
        octets[5] ^= 0x80;
        MacAddress::new(octets)
    }

    fn request(&self, version: FirmwareVersion, who: Who) -> CheckRequest {
        let device = self.device();
        let mut identity = device.identity.clone();
        if who == Who::Test {
            identity.mac = Some(self.test_mac());
            identity.serial = None;
        }
        CheckRequest {
            identity,
            modules: vec![InstalledModule {
                update_type: device.update_type.clone(),
                file_name: device.image.clone(),
                version,
                timestamp: None,
            }],
            user: None,
        }
    }

    /// A check through the agent's own client (what a device would send and decode).
    async fn check_as(&self, version: FirmwareVersion, who: Who) -> Result<CheckResponse, String> {
        let request = self.request(version, who);
        net::check(&self.client, &self.opts.target, &request, None)
            .await
            .map_err(|e| format!("check as a {} device on {version}: {e}", who_name(who)))
    }

    /// POSTs a raw body to the internal check URL on a fresh connection.
    async fn post_raw(&self, body: impl Into<Bytes>) -> Result<Reply, String> {
        let url = &self.opts.target;
        raw::once(
            url,
            self.tls_for(url)?,
            Method::POST,
            &[(header::CONTENT_TYPE, CONTENT_TYPE_XML.to_owned())],
            body,
        )
        .await
    }

    /// A normal check must still get 200 with a reply that decodes.
    async fn still_serving(&self) -> Result<(), String> {
        let reply = self
            .post_raw(self.request(self.device().version, Who::Regular).encode())
            .await
            .map_err(|e| format!("the server stopped serving: {e}"))?;
        if reply.status != StatusCode::OK {
            return Err(format!(
                "a normal check right after got {}",
                reply.summary()
            ));
        }
        CheckResponse::decode(&reply.body).map(drop).map_err(|e| {
            format!("a normal check right after got a reply that does not decode: {e}")
        })
    }

    fn credentials(&self) -> Result<Credentials, Stop> {
        match (&self.opts.user, &self.opts.password) {
            (Some(user), Some(password)) => Ok(Credentials::parse_user(user, password)),
            _ => skip("needs --user and --password-file (the NTLM account for the external site)"),
        }
    }

    fn external(&self) -> Result<&HttpUrl, Stop> {
        self.opts.external_target.as_ref().map_or_else(
            || skip("needs --external-target (the NTLM-protected check URL)"),
            Ok,
        )
    }

    // ------------------------------------------------------------------------------------
    // Admin
    // ------------------------------------------------------------------------------------

    async fn admin(&self, method: Method, path: &str, body: Bytes) -> Result<Reply, String> {
        let Some(base) = &self.opts.admin else {
            return Err("no --admin URL".into());
        };
        let url = base.with_path(path);
        let headers = [(header::CONTENT_TYPE, "application/octet-stream".to_owned())];
        let reply = raw::once(&url, self.tls_for(&url)?, method.clone(), &headers, body)
            .await
            .map_err(|e| format!("admin {method} {path}: {e}"))?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(format!("admin {method} {path}: {}", reply.summary()))
        }
    }

    fn key_path(&self) -> String {
        let k = self.key();
        [
            k.device_type.as_str(),
            k.brand.as_str(),
            k.model.as_str(),
            k.revision.as_str(),
            k.locale.as_str(),
            k.update_type.as_str(),
        ]
        .map(percent_encode)
        .join("/")
    }

    /// Publishes the probe image and its catalog as `version` (pending on the server).
    async fn publish(&self, version: FirmwareVersion) -> Result<(), String> {
        let image = self.device().image.clone();
        let catalog = FileName::new(&format!("{}.cat", image.stem()))
            .map_err(|e| format!("catalog name for {image}: {e}"))?;
        let files = [
            (image, probe_bytes(version, PROBE_IMAGE_BYTES)),
            (
                catalog,
                Bytes::from(format!("ucupdate conformance catalog {version}\n")),
            ),
        ];
        for (name, bytes) in files {
            let path = format!(
                "/admin/files/{}/{version}/{}",
                self.key_path(),
                percent_encode(name.as_str())
            );
            self.admin(Method::PUT, &path, bytes).await?;
        }
        Ok(())
    }

    async fn rule(&self, action: &str) -> Result<(), String> {
        let path = format!("/admin/rules/{}/{action}", self.key_path());
        self.admin(Method::POST, &path, Bytes::new())
            .await
            .map(drop)
    }

    /// The probe is a regular device, the derived MAC a test device; V1 published and approved.
    async fn admin_setup(&self) -> Result<(), String> {
        let identity = &self.device().identity;
        if let Some(mac) = identity.mac {
            self.admin(
                Method::DELETE,
                &format!("/admin/test-devices/{mac}"),
                Bytes::new(),
            )
            .await?;
        }
        if let Some(serial) = &identity.serial {
            let path = format!(
                "/admin/test-devices/serial:{}",
                percent_encode(serial.as_str())
            );
            self.admin(Method::DELETE, &path, Bytes::new()).await?;
        }
        let test = format!("/admin/test-devices/{}", self.test_mac());
        self.admin(Method::PUT, &test, Bytes::new()).await?;
        self.publish(self.device().version).await?;
        self.rule("approve").await
    }

    fn versions(&self) -> Result<[FirmwareVersion; 3], Stop> {
        let v1 = self.device().version;
        match newer(v1).and_then(|v2| Some([v1, v2, newer(v2)?])) {
            Some(v) => Ok(v),
            None => fail(format!(
                "probe version {v1} leaves no room for two newer versions"
            )),
        }
    }

    /// Moves the probe rule forward to `to`, doing each earlier step on the way.
    async fn advance(&mut self, to: Stage) -> Result<[FirmwareVersion; 3], Stop> {
        if self.opts.admin.is_none() {
            return skip(
                "needs --admin (a ucupdate-server's admin API): a pool's rules change only \
                 through its administrator",
            );
        }
        self.baseline().await?;
        let [_, v2, v3] = self.versions()?;
        let mut stage = self.stage.unwrap_or(Stage::Baseline);
        if stage > to {
            return fail(format!(
                "the probe rule is already past {to:?} (at {stage:?})"
            ));
        }
        while stage < to {
            let (step, next) = match stage {
                Stage::Baseline => (self.publish(v2).await, Stage::V2Pending),
                Stage::V2Pending => (self.rule("approve").await, Stage::V2Approved),
                Stage::V2Approved => (self.rule("restore").await, Stage::Restored),
                Stage::Restored => (self.publish(v3).await, Stage::V3Pending),
                Stage::V3Pending | Stage::Reset => (self.rule("reset").await, Stage::Reset),
            };
            step.map_err(|e| Stop::Fail(format!("moving the probe rule to {next:?}: {e}")))?;
            stage = next;
            self.stage = Some(stage);
        }
        self.versions()
    }

    // ------------------------------------------------------------------------------------
    // Shared results
    // ------------------------------------------------------------------------------------

    async fn baseline(&mut self) -> Result<Baseline, Stop> {
        if let Some(b) = &self.baseline {
            return b.clone();
        }
        let b = self.find_baseline().await;
        self.baseline = Some(b.clone());
        b
    }

    async fn find_baseline(&mut self) -> Result<Baseline, Stop> {
        let v1 = self.device().version;
        if self.opts.admin.is_some() {
            self.admin_setup()
                .await
                .map_err(|e| Stop::Fail(format!("admin setup: {e}")))?;
            self.stage = Some(Stage::Baseline);
            let Some(behind) = older(v1) else {
                return fail("probe version 0.0.0.0 has no older version; give another");
            };
            return match self.check_as(behind, Who::Regular).await? {
                CheckResponse::Update(offer) if offer.version == v1 => Ok(Baseline {
                    approved: v1,
                    offer,
                }),
                other => fail(format!(
                    "after publishing and approving {v1} through the admin API, a device on \
                     {behind} got {}",
                    describe(&other)
                )),
            };
        }
        // No admin: learn the approved version from what the server offers the probe.
        let offer = match self.check_as(v1, Who::Regular).await? {
            CheckResponse::Update(offer) => offer,
            CheckResponse::NoUpdate => {
                match self
                    .check_as(FirmwareVersion::new(0, 0, 0, 0), Who::Regular)
                    .await?
                {
                    CheckResponse::Update(offer) => offer,
                    CheckResponse::NoUpdate => {
                        return skip(format!(
                            "the server offers nothing to the probe device ({}) on {v1} or \
                             0.0.0.0, so it holds no approved update for it: give --admin \
                             (ucupdate-server) or probe a model with an approved update",
                            self.key()
                        ))
                    }
                }
            }
        };
        if offer.status == OfferStatus::Pending {
            return skip(
                "the probe device is a test device on this server (it was offered a pending \
                 version): probe with a regular device's MAC and serial",
            );
        }
        Ok(Baseline {
            approved: offer.version,
            offer,
        })
    }

    async fn fetched(&mut self) -> Result<Vec<Fetched>, Stop> {
        if let Some(f) = &self.fetched {
            return f.clone();
        }
        let f = self.fetch_all().await;
        self.fetched = Some(f.clone());
        f
    }

    async fn fetch_all(&mut self) -> Result<Vec<Fetched>, Stop> {
        let offer = self.baseline().await?.offer;
        if offer.base_url.trim().is_empty() {
            return fail(
                "the offer's BaseURL is blank (the server's internal URL setting is not \
                 populated): devices inside cannot download",
            );
        }
        let base: HttpUrl = offer
            .base_url
            .trim()
            .parse()
            .map_err(|e| format!("the offer's BaseURL {:?}: {e}", offer.base_url))?;
        let mut out = Vec::new();
        for file in &offer.files {
            let url = base.join(file.file_name.as_str());
            let reply = match self.tls_for(&url) {
                Ok(tls) => raw::once(&url, tls, Method::GET, &[], Bytes::new()).await,
                Err(e) => Err(e),
            };
            out.push(Fetched {
                file: file.clone(),
                url,
                reply,
            });
        }
        Ok(out)
    }

    /// The offered image (`.nbt`), fetched.
    async fn image(&mut self) -> Result<Fetched, Stop> {
        let fetched = self.fetched().await?;
        match fetched.into_iter().find(|f| f.file.kind == FileKind::Image) {
            Some(f) => Ok(f),
            None => skip("the offer holds no .nbt image"),
        }
    }

    // ------------------------------------------------------------------------------------
    // The checks: the update check
    // ------------------------------------------------------------------------------------

    async fn check_accepted(&mut self) -> Verdict {
        let reply = self
            .post_raw(self.request(self.device().version, Who::Regular).encode())
            .await?;
        if reply.status != StatusCode::OK {
            return fail(format!("expected 200, got {}", reply.summary()));
        }
        let response = CheckResponse::decode(&reply.body)
            .map_err(|e| format!("the 200 reply does not decode: {e}"))?;
        Ok(format!(
            "200 ({}), {}",
            reply
                .header(header::CONTENT_TYPE)
                .unwrap_or_else(|| "no Content-Type".into()),
            describe(&response)
        ))
    }

    async fn unknown_elements(&mut self) -> Verdict {
        let body = self.request(self.device().version, Who::Regular).encode();
        let body = inject_unknown(&body)
            .ok_or_else(|| "cannot place unknown elements in the probe request".to_owned())?;
        let reply = self.post_raw(body).await?;
        if reply.status != StatusCode::OK {
            return fail(format!(
                "a check with unknown elements and attributes got {}",
                reply.summary()
            ));
        }
        let response = CheckResponse::decode(&reply.body)
            .map_err(|e| format!("the 200 reply does not decode: {e}"))?;
        Ok(format!("200, {}", describe(&response)))
    }

    async fn no_update_on_approved(&mut self) -> Verdict {
        let approved = self.baseline().await?.approved;
        match self.check_as(approved, Who::Regular).await? {
            CheckResponse::NoUpdate => {
                Ok(format!("a device on the approved {approved}: downloads=0"))
            }
            other => fail(format!(
                "a device already on the approved {approved} got {}",
                describe(&other)
            )),
        }
    }

    async fn offer_when_behind(&mut self) -> Verdict {
        let approved = self.baseline().await?.approved;
        let Some(behind) = older(approved) else {
            return skip("the approved version is 0.0.0.0: nothing is older");
        };
        self.expect_offer(behind, approved).await
    }

    async fn offer_when_ahead(&mut self) -> Verdict {
        let approved = self.baseline().await?.approved;
        let Some(ahead) = newer(approved) else {
            return skip("the approved version is the highest possible: nothing is newer");
        };
        self.expect_offer(ahead, approved).await
    }

    async fn expect_offer(&self, running: FirmwareVersion, approved: FirmwareVersion) -> Verdict {
        match self.check_as(running, Who::Regular).await? {
            CheckResponse::Update(o)
                if o.version == approved && o.status != OfferStatus::Pending =>
            {
                Ok(format!(
                    "a device on {running} is offered {approved} ({}, {} files)",
                    o.status.as_str(),
                    o.files.len()
                ))
            }
            other => fail(format!(
                "a device on {running} should be offered the approved {approved}, got {}",
                describe(&other)
            )),
        }
    }

    // ------------------------------------------------------------------------------------
    // Downloads
    // ------------------------------------------------------------------------------------

    async fn offered_urls_resolve(&mut self) -> Verdict {
        let fetched = self.fetched().await?;
        let mut seen = Vec::new();
        let mut bad = Vec::new();
        for f in &fetched {
            match &f.reply {
                Ok(r) if r.status == StatusCode::OK => {
                    seen.push(format!("{} 200", f.file.file_name));
                }
                Ok(r) => bad.push(format!("{}: {}", f.url, r.summary())),
                Err(e) => bad.push(format!("{}: {e}", f.url)),
            }
        }
        if bad.is_empty() {
            Ok(seen.join(", "))
        } else {
            fail(bad.join("; "))
        }
    }

    async fn downloads_not_empty(&mut self) -> Verdict {
        let fetched = self.fetched().await?;
        let mut seen = Vec::new();
        let mut bad = Vec::new();
        for f in &fetched {
            let name = &f.file.file_name;
            match &f.reply {
                Ok(r) if r.status == StatusCode::OK && r.body.is_empty() => bad.push(format!(
                    "{name}: 200 with an empty body (devices then fail silently, as with IIS \
                     lacking a MIME mapping)"
                )),
                Ok(r) if r.status == StatusCode::OK => {
                    seen.push(format!("{name} {} bytes", r.body.len()));
                }
                Ok(r) => bad.push(format!("{name}: {}", r.summary())),
                Err(e) => bad.push(format!("{name}: {e}")),
            }
        }
        if bad.is_empty() {
            Ok(seen.join(", "))
        } else {
            fail(bad.join("; "))
        }
    }

    async fn nbt_content_type(&mut self) -> Verdict {
        let image = self.image().await?;
        let reply = image
            .reply
            .map_err(|e| format!("{}: {e}", image.file.file_name))?;
        if reply.status != StatusCode::OK {
            return fail(format!("{}: {}", image.file.file_name, reply.summary()));
        }
        let expected = FileKind::Image.content_type();
        let Some(value) = reply.header(header::CONTENT_TYPE) else {
            return fail(format!(
                "{} is served with no Content-Type: the missing-MIME-mapping symptom (IIS \
                 without a .nbt mapping served phones empty downloads)",
                image.file.file_name
            ));
        };
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case(expected) {
            Ok(format!("{}: Content-Type {value}", image.file.file_name))
        } else {
            fail(format!(
                "{} is served as {value:?}, expected {expected}",
                image.file.file_name
            ))
        }
    }

    async fn size_and_hash(&mut self) -> Verdict {
        let fetched = self.fetched().await?;
        let mut seen = Vec::new();
        let mut bad = Vec::new();
        for f in fetched
            .iter()
            .filter(|f| f.file.size.is_some() || f.file.sha256.is_some())
        {
            let name = &f.file.file_name;
            // The agent's own download verifies size and SHA-256 the way a device does.
            let (result, _) = net::download_to(
                &self.client,
                &f.url,
                &f.file,
                DownloadSink::Discard,
                0,
                None,
            )
            .await;
            match result {
                Ok(d) => seen.push(format!("{name} {} bytes", d.size)),
                Err(e) => bad.push(format!("{name}: {e}")),
            }
        }
        if seen.is_empty() && bad.is_empty() {
            return skip(
                "the offer gives no Size or SHA256 (a Lync/SfB pool sends neither; devices \
                 rely on the .cat catalog)",
            );
        }
        if bad.is_empty() {
            Ok(format!("verified: {}", seen.join(", ")))
        } else {
            fail(bad.join("; "))
        }
    }

    async fn range_requests(&mut self) -> Verdict {
        let image = self.image().await?;
        let full = match &image.reply {
            Ok(r) if r.status == StatusCode::OK => r.body.clone(),
            Ok(r) => return fail(format!("the whole image: {}", r.summary())),
            Err(e) => return fail(format!("the whole image: {e}")),
        };
        let len = full.len();
        if len < 4 {
            return skip(format!("the image has {len} bytes: too small for ranges"));
        }
        let tls = self.tls_for(&image.url)?;
        let cases = [
            (len / 3, Some(2 * len / 3)),
            // What a device sends to resume a cut download.
            (len / 2, None),
        ];
        let mut seen = Vec::new();
        for (start, end) in cases {
            let spec = match end {
                Some(end) => format!("bytes={start}-{end}"),
                None => format!("bytes={start}-"),
            };
            let last = end.unwrap_or(len - 1);
            let headers = [(header::RANGE, spec.clone())];
            let reply = raw::once(&image.url, tls, Method::GET, &headers, Bytes::new()).await?;
            if reply.status != StatusCode::PARTIAL_CONTENT {
                return fail(format!(
                    "Range: {spec} got {}, expected 206",
                    reply.summary()
                ));
            }
            let expected_range = format!("bytes {start}-{last}/{len}");
            let content_range = reply.header(header::CONTENT_RANGE).unwrap_or_default();
            if content_range.trim() != expected_range {
                return fail(format!(
                    "Range: {spec} got Content-Range {content_range:?}, expected \
                     {expected_range:?}"
                ));
            }
            if reply.body[..] != full[start..=last] {
                return fail(format!(
                    "Range: {spec}: the {} bytes differ from bytes {start}-{last} of the whole \
                     file",
                    reply.body.len()
                ));
            }
            seen.push(format!("{spec} -> 206 {expected_range}"));
        }
        Ok(seen.join(", "))
    }

    // ------------------------------------------------------------------------------------
    // External site (NTLM)
    // ------------------------------------------------------------------------------------

    fn check_headers(auth: Option<String>) -> Vec<(HeaderName, String)> {
        let mut headers = vec![(header::CONTENT_TYPE, CONTENT_TYPE_XML.to_owned())];
        if let Some(value) = auth {
            headers.push((header::AUTHORIZATION, value));
        }
        headers
    }

    /// Sends a Type 1 on `conn` and returns the server's Type 2.
    async fn type1(
        conn: &mut raw::Conn,
        path: &str,
        ntlm: &mut ucupdate_ntlm::Client,
    ) -> Result<Vec<u8>, Stop> {
        let t1 = ucupdate_ntlm::to_header(&ntlm.negotiate());
        // An empty body on the Type 1 leg, as curl and the agent send it.
        let reply = conn
            .send(
                Method::POST,
                path,
                &Self::check_headers(Some(t1)),
                Bytes::new(),
            )
            .await
            .map_err(|e| format!("Type 1: {e}"))?;
        if reply.status != StatusCode::UNAUTHORIZED {
            return fail(format!(
                "Type 1 got {}, expected 401 with a challenge",
                reply.summary()
            ));
        }
        match reply.ntlm_challenge() {
            Some(t2) => Ok(t2),
            None => fail("the 401 to a Type 1 carries no NTLM challenge (Type 2)"),
        }
    }

    async fn external_anonymous(&mut self) -> Verdict {
        let url = self.external()?.clone();
        let body = self.request(self.device().version, Who::Regular).encode();
        let reply = raw::once(
            &url,
            self.tls_for(&url)?,
            Method::POST,
            &Self::check_headers(None),
            body,
        )
        .await?;
        if reply.status != StatusCode::UNAUTHORIZED {
            return fail(format!(
                "an anonymous external check got {}, expected 401 (R2 denies anonymous \
                 external devices)",
                reply.summary()
            ));
        }
        if !reply.offers_ntlm() {
            return fail(format!(
                "401 without WWW-Authenticate: NTLM (got {:?}): devices cannot sign in",
                reply.header(header::WWW_AUTHENTICATE)
            ));
        }
        Ok("401, WWW-Authenticate: NTLM".into())
    }

    async fn external_wrong_password(&mut self) -> Verdict {
        let url = self.external()?.clone();
        let Some(user) = &self.opts.user else {
            return skip("needs --user (any password is wrong enough, but the user must exist)");
        };
        let wrong = match &self.opts.password {
            Some(p) => format!("{p}-not-this"),
            None => "not-the-password".to_owned(),
        };
        let mut ntlm = ucupdate_ntlm::Client::new(Credentials::parse_user(user, &wrong), "UCCONF");
        let mut conn = raw::connect(&url, self.tls_for(&url)?).await?;
        let t2 = Self::type1(&mut conn, &url.path, &mut ntlm).await?;
        let t3 = type3(&mut ntlm, &t2)?;
        let body = self.request(self.device().version, Who::Regular).encode();
        let reply = conn
            .send(
                Method::POST,
                &url.path,
                &Self::check_headers(Some(t3)),
                body,
            )
            .await
            .map_err(|e| format!("Type 3: {e}"))?;
        match reply.status {
            StatusCode::UNAUTHORIZED => Ok("Type 3 with a wrong password: 401".into()),
            s if s.is_success() => fail(format!(
                "a wrong password was accepted ({s}): the server does not verify the NTLMv2 \
                 response"
            )),
            _ => fail(format!(
                "Type 3 with a wrong password got {}, expected 401",
                reply.summary()
            )),
        }
    }

    async fn external_same_connection(&mut self) -> Verdict {
        let url = self.external()?.clone();
        let creds = self.credentials()?;
        let tls = self.tls_for(&url)?;
        let body = self.request(self.device().version, Who::Regular).encode();
        let mut conn = raw::connect(&url, tls).await?;
        let anonymous = conn
            .send(
                Method::POST,
                &url.path,
                &Self::check_headers(None),
                body.clone(),
            )
            .await
            .map_err(|e| format!("anonymous request: {e}"))?;
        if anonymous.status != StatusCode::UNAUTHORIZED {
            return fail(format!(
                "the anonymous request got {}, expected 401",
                anonymous.summary()
            ));
        }
        let mut notes = vec!["anonymous 401".to_owned()];
        let closes = anonymous
            .header(header::CONNECTION)
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"));
        if closes || conn.is_closed() {
            // Allowed: the handshake has not started. Devices reconnect before Type 1.
            conn = raw::connect(&url, tls).await?;
            notes.push("(closed; reconnected)".into());
        }
        let mut ntlm = ucupdate_ntlm::Client::new(creds, "UCCONF");
        let t2 = Self::type1(&mut conn, &url.path, &mut ntlm).await?;
        notes.push("Type 1 -> 401 + Type 2".into());
        let t3 = type3(&mut ntlm, &t2)?;
        let reply = conn
            .send(
                Method::POST,
                &url.path,
                &Self::check_headers(Some(t3)),
                body,
            )
            .await
            .map_err(|e| {
                format!(
                    "Type 3 on the Type 1's connection: {e} (a server that closes after its \
                     Type 2 makes NTLM impossible)"
                )
            })?;
        if reply.status != StatusCode::OK {
            return fail(format!(
                "Type 3 with the right password got {}, expected 200",
                reply.summary()
            ));
        }
        let response = CheckResponse::decode(&reply.body)
            .map_err(|e| format!("the authenticated reply does not decode: {e}"))?;
        notes.push(format!("Type 3 -> 200 ({})", describe(&response)));
        Ok(notes.join(", "))
    }

    async fn external_fresh_type3(&mut self) -> Verdict {
        let url = self.external()?.clone();
        let creds = self.credentials()?;
        let tls = self.tls_for(&url)?;
        let mut first = raw::connect(&url, tls).await?;
        let mut ntlm = ucupdate_ntlm::Client::new(creds, "UCCONF");
        let t2 = Self::type1(&mut first, &url.path, &mut ntlm).await?;
        let t3 = type3(&mut ntlm, &t2)?;
        let body = self.request(self.device().version, Who::Regular).encode();
        let mut fresh = raw::connect(&url, tls).await?;
        let reply = fresh
            .send(
                Method::POST,
                &url.path,
                &Self::check_headers(Some(t3)),
                body,
            )
            .await
            .map_err(|e| format!("Type 3 on a fresh connection: {e}"))?;
        // Keep the handshake's connection open until now, so the server cannot claim it was
        // gone.
        drop(first);
        match reply.status {
            StatusCode::UNAUTHORIZED => Ok("a valid Type 3 on a fresh connection: 401".into()),
            s if s.is_success() => fail(format!(
                "a Type 3 on a connection that never sent a Type 1 was accepted ({s}): NTLM is \
                 not bound to the connection, so a captured Type 3 logs anyone in"
            )),
            _ => fail(format!("expected 401, got {}", reply.summary())),
        }
    }

    async fn external_download(&mut self) -> Verdict {
        self.external()?;
        let creds = self.credentials()?;
        let offer = self.baseline().await?.offer;
        if offer.external_base_url.trim().is_empty() {
            return skip("the offer's ExternalBaseURL is blank (no external URL configured)");
        }
        let base: HttpUrl = offer
            .external_base_url
            .trim()
            .parse()
            .map_err(|e| format!("the offer's ExternalBaseURL: {e}"))?;
        let Some(image) = offer.image().cloned() else {
            return skip("the offer holds no .nbt image");
        };
        let url = base.join(image.file_name.as_str());
        let anonymous =
            raw::once(&url, self.tls_for(&url)?, Method::GET, &[], Bytes::new()).await?;
        if anonymous.status != StatusCode::UNAUTHORIZED {
            return fail(format!(
                "an anonymous GET of {url} got {}, expected 401",
                anonymous.summary()
            ));
        }
        let (result, stats) = net::download_to(
            &self.client,
            &url,
            &image,
            DownloadSink::Discard,
            0,
            Some(&creds),
        )
        .await;
        match result {
            Ok(d) if d.size > 0 => Ok(format!(
                "anonymous 401; with NTLM {} bytes in {} requests on {} connection(s)",
                d.size, stats.requests, stats.connections
            )),
            Ok(_) => fail("the authenticated download is empty"),
            Err(e) => fail(format!("the download with NTLM failed: {e}")),
        }
    }

    // ------------------------------------------------------------------------------------
    // Rules (admin)
    // ------------------------------------------------------------------------------------

    async fn test_device_pending(&mut self) -> Verdict {
        let [v1, v2, _] = self.advance(Stage::V2Pending).await?;
        match self.check_as(v1, Who::Test).await? {
            CheckResponse::Update(o) if o.version == v2 && o.status == OfferStatus::Pending => {
                Ok(format!(
                    "test device {} on {v1} is offered {v2} (pending)",
                    self.test_mac()
                ))
            }
            other => fail(format!(
                "with {v2} pending, test device {} on {v1} got {}",
                self.test_mac(),
                describe(&other)
            )),
        }
    }

    async fn regular_device_approved(&mut self) -> Verdict {
        let [v1, v2, _] = self.advance(Stage::V2Pending).await?;
        let on_approved = self.check_as(v1, Who::Regular).await?;
        if on_approved != CheckResponse::NoUpdate {
            return fail(format!(
                "with {v2} pending, a regular device on the approved {v1} got {}",
                describe(&on_approved)
            ));
        }
        let Some(behind) = older(v1) else {
            return fail("the probe version has no older version");
        };
        match self.check_as(behind, Who::Regular).await? {
            CheckResponse::Update(o) if o.version == v1 && o.status == OfferStatus::Approved => {
                Ok(format!(
                    "with {v2} pending: a regular device on {v1} gets downloads=0, on {behind} \
                     the approved {v1}"
                ))
            }
            other => fail(format!(
                "with {v2} pending, a regular device on {behind} got {}, expected the \
                 approved {v1}",
                describe(&other)
            )),
        }
    }

    async fn approve_transition(&mut self) -> Verdict {
        let [v1, v2, _] = self.advance(Stage::V2Approved).await?;
        match self.check_as(v1, Who::Regular).await? {
            CheckResponse::Update(o) if o.version == v2 && o.status == OfferStatus::Approved => {}
            other => {
                return fail(format!(
                    "after approving {v2}, a regular device on {v1} got {}",
                    describe(&other)
                ))
            }
        }
        match self.check_as(v2, Who::Regular).await? {
            CheckResponse::NoUpdate => Ok(format!(
                "after approve: {v1} -> offered {v2}; on {v2} -> downloads=0"
            )),
            other => fail(format!(
                "after approving {v2}, a device on it got {}",
                describe(&other)
            )),
        }
    }

    async fn restore_transition(&mut self) -> Verdict {
        let [v1, v2, _] = self.advance(Stage::Restored).await?;
        match self.check_as(v2, Who::Regular).await? {
            CheckResponse::Update(o) if o.version == v1 && o.status != OfferStatus::Pending => {
                Ok(format!(
                    "after restore: a device on {v2} is offered {v1} ({})",
                    o.status.as_str()
                ))
            }
            other => fail(format!(
                "after restore, a device on {v2} should be offered the restore version {v1}, \
                 got {}",
                describe(&other)
            )),
        }
    }

    async fn reset_transition(&mut self) -> Verdict {
        let [v1, _, v3] = self.advance(Stage::V3Pending).await?;
        match self.check_as(v1, Who::Test).await? {
            CheckResponse::Update(o) if o.version == v3 && o.status == OfferStatus::Pending => {}
            other => {
                return fail(format!(
                    "before reset, with {v3} pending, the test device on {v1} got {}",
                    describe(&other)
                ))
            }
        }
        self.advance(Stage::Reset).await?;
        match self.check_as(v1, Who::Test).await? {
            CheckResponse::Update(o) if o.version == v3 => fail(format!(
                "after reset, the test device is still offered the cancelled {v3}"
            )),
            other => Ok(format!(
                "before reset the test device got {v3} (pending); after: {}",
                describe(&other)
            )),
        }
    }

    // ------------------------------------------------------------------------------------
    // Hostile input
    // ------------------------------------------------------------------------------------

    async fn malformed_bodies(&mut self) -> Verdict {
        let good = self.request(self.device().version, Who::Regular).encode();
        let mut bodies: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("not XML", b"this is not xml".to_vec()),
            ("truncated", good.as_bytes()[..good.len() / 2].to_vec()),
            ("wrong root", b"<DeviceUpdateResponse><Downloads>0</Downloads></DeviceUpdateResponse>".to_vec()),
            (
                "entity expansion",
                br#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><DeviceUpdateRequest><DeviceType>&c;</DeviceType></DeviceUpdateRequest>"#.to_vec(),
            ),
            ("invalid UTF-8", b"<DeviceUpdateRequest>\xff\xfe\xfd</DeviceUpdateRequest>".to_vec()),
        ];
        let version = self.device().version.to_string();
        if good.contains(&version) {
            bodies.push((
                "bad version",
                good.replace(&version, "1.2.x.4").into_bytes(),
            ));
        }
        if let (Some(start), Some(end)) = (good.find("<Modules>"), good.find("</Modules>")) {
            let mut without = good[..start].to_owned();
            without.push_str(&good[end + "</Modules>".len()..]);
            bodies.push(("no modules", without.into_bytes()));
        }
        let mut statuses = Vec::new();
        let mut bad = Vec::new();
        for (what, body) in bodies {
            match self.post_raw(body).await {
                Ok(r) if r.status.is_client_error() => {
                    statuses.push(format!("{what} {}", r.status.as_u16()))
                }
                Ok(r) => bad.push(format!("{what}: {}", r.summary())),
                Err(e) => bad.push(format!("{what}: no 4xx answer: {e}")),
            }
        }
        if !bad.is_empty() {
            return fail(format!("not refused with 4xx: {}", bad.join("; ")));
        }
        self.still_serving().await?;
        Ok(format!(
            "{}; then a normal check got 200",
            statuses.join(", ")
        ))
    }

    async fn oversized_body(&mut self) -> Verdict {
        let mut body = b"<?xml version=\"1.0\"?><DeviceUpdateRequest><Padding>".to_vec();
        body.resize(body.len() + (1 << 20), b'A');
        body.extend_from_slice(b"</Padding></DeviceUpdateRequest>");
        let size = body.len();
        let url = &self.opts.target;
        let sent = raw::post_large(url, self.tls_for(url)?, CONTENT_TYPE_XML, Bytes::from(body));
        match sent.await {
            Ok(status) if status.is_client_error() => {
                self.still_serving().await?;
                Ok(format!(
                    "{size}-byte body: {}; then a normal check got 200",
                    status.as_u16()
                ))
            }
            Ok(status) => fail(format!("a {size}-byte check body got {status}")),
            Err(e) => fail(format!("a {size}-byte check body got no 4xx answer: {e}")),
        }
    }

    async fn path_traversal(&mut self) -> Verdict {
        let mut paths: Vec<String> = [
            "/DeviceUpdateFiles_Int/../../../../etc/passwd",
            "/DeviceUpdateFiles_Int/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/DeviceUpdateFiles_Int/%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
            "/DeviceUpdateFiles_Int/..\\..\\..\\..\\windows\\win.ini",
            "/DeviceUpdateFiles_Int/..%5c..%5c..%5c..%5cwindows%5cwin.ini",
            "/DeviceUpdateFiles_Int/UCPhone/%2e%2e/%2e%2e/%2e%2e/state.json",
        ]
        .map(str::to_owned)
        .to_vec();
        // Under a real version directory too, where a naive server would find the store.
        if let Some(Ok(b)) = &self.baseline {
            if let Ok(base) = b.offer.base_url.trim().parse::<HttpUrl>() {
                let dir = base.path.trim_end_matches('/');
                paths.push(format!("{dir}/../../../../../../../../state.json"));
                paths.push(format!(
                    "{dir}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/state.json"
                ));
                paths.push(format!("{dir}/..\\..\\..\\..\\..\\..\\..\\..\\state.json"));
            }
        }
        let target = &self.opts.target;
        let tls = self.tls_for(target)?;
        let mut statuses = Vec::new();
        let mut bad = Vec::new();
        for path in &paths {
            let url = target.with_path(path);
            match raw::once(&url, tls, Method::GET, &[], Bytes::new()).await {
                Ok(r) if r.status.is_client_error() => statuses.push(r.status.as_u16()),
                Ok(r) => bad.push(format!("{path}: {}", r.summary())),
                // A client-side refusal to send the path proves nothing about the server.
                Err(e) => bad.push(format!("{path}: no 4xx answer: {e}")),
            }
        }
        if !bad.is_empty() {
            return fail(format!("not refused with 4xx: {}", bad.join("; ")));
        }
        self.still_serving().await?;
        statuses.sort_unstable();
        statuses.dedup();
        Ok(format!(
            "{} paths refused ({}); then a normal check got 200",
            paths.len(),
            statuses
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join("/")
        ))
    }
}

fn who_name(who: Who) -> &'static str {
    match who {
        Who::Regular => "regular",
        Who::Test => "test",
    }
}

/// A Type 3 answering `challenge`, with a client challenge from the ring CSPRNG (the rustls
/// provider's) and the time from the simulator's clock module.
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
    let at = request.find(root)? + root.len();
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
            (h ^ u64::from(p)).wrapping_mul(0x100_0000_01b3)
        });
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}
