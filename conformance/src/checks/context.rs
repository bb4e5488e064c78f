//! The context's plumbing: requests as the probe, the admin API (publish, approve, restore,
//! reset), and the shared results computed once per run: the baseline (approved version and
//! its offer, published by the suite or found on the server) and the fetched offered files.

use super::*;

impl Ctx<'_> {
    // ------------------------------------------------------------------------------------
    // Plumbing
    // ------------------------------------------------------------------------------------

    /// The TLS config when `url` needs one.
    pub(super) fn tls_for(
        &self,
        url: &HttpUrl,
    ) -> Result<Option<&Arc<rustls::ClientConfig>>, String> {
        if url.https {
            self.tls.as_ref().map(Some).map_err(Clone::clone)
        } else {
            Ok(None)
        }
    }

    pub(super) fn device(&self) -> &ProbeDevice {
        &self.opts.device
    }

    pub(super) fn key(&self) -> UpdateKey {
        UpdateKey::for_device(&self.device().identity, self.device().update_type.clone())
    }

    /// The MAC the admin setup registers as a test device: the probe's (or the default
    /// probe's) with the top bit of the last octet flipped, so it is stable per probe.
    pub(super) fn test_mac(&self) -> MacAddress {
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

    pub(super) fn request(&self, version: FirmwareVersion, who: Who) -> CheckRequest {
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

    /// A check body as the probe sends it: in `--dialect`'s format, else the built-in one.
    pub(super) fn encode(&self, request: &CheckRequest) -> String {
        match &self.opts.dialect {
            Some(d) => d.encode_request(request),
            None => request.encode(),
        }
    }

    /// A check reply as the probe reads it (`--dialect`'s paths, else the built-in reader).
    pub(super) fn decode(
        &self,
        body: &[u8],
    ) -> Result<CheckResponse, ucupdate_protocol::ProtocolError> {
        match &self.opts.dialect {
            Some(d) => d.decode_reply(body),
            None => CheckResponse::decode(body),
        }
    }

    /// A check through the agent's own client (what a device would send and decode).
    pub(super) async fn check_as(
        &self,
        version: FirmwareVersion,
        who: Who,
    ) -> Result<CheckResponse, String> {
        let request = self.request(version, who);
        let dialect = self.opts.dialect.as_deref();
        net::check_in_dialect_with_stats(&self.client, &self.opts.target, &request, dialect, None)
            .await
            .0
            .map_err(|e| format!("check as a {} device on {version}: {e}", who_name(who)))
    }

    /// POSTs a raw body to the internal check URL on a fresh connection.
    pub(super) async fn post_raw(&self, body: impl Into<Bytes>) -> Result<Reply, String> {
        let Some(d) = &self.opts.dialect else {
            let url = &self.opts.target;
            return raw::once(
                url,
                self.tls_for(url)?,
                Method::POST,
                &[(header::CONTENT_TYPE, CONTENT_TYPE_XML.to_owned())],
                body,
            )
            .await;
        };
        // The dialect's path on the target's host, and the headers the captured phone sent.
        let url = self.opts.target.with_path(&d.request.path);
        let headers: Vec<(HeaderName, String)> = d
            .request
            .headers
            .iter()
            .filter_map(|(k, v)| Some((HeaderName::from_bytes(k.as_bytes()).ok()?, v.clone())))
            .collect();
        raw::once(&url, self.tls_for(&url)?, Method::POST, &headers, body).await
    }

    /// A normal check must still get 200 with a reply that decodes.
    pub(super) async fn still_serving(&self) -> Result<(), String> {
        let reply = self
            .post_raw(self.encode(&self.request(self.device().version, Who::Regular)))
            .await
            .map_err(|e| format!("the server stopped serving: {e}"))?;
        if reply.status != StatusCode::OK {
            return Err(format!(
                "a normal check right after got {}",
                reply.summary()
            ));
        }
        self.decode(&reply.body).map(drop).map_err(|e| {
            format!("a normal check right after got a reply that does not decode: {e}")
        })
    }

    pub(super) fn credentials(&self) -> Result<Credentials, Stop> {
        match (&self.opts.user, &self.opts.password) {
            (Some(user), Some(password)) => Ok(Credentials::parse_user(user, password)),
            _ => skip("needs --user and --password-file (the NTLM account for the external site)"),
        }
    }

    pub(super) fn external(&self) -> Result<&HttpUrl, Stop> {
        self.opts.external_target.as_ref().map_or_else(
            || skip("needs --external-target (the NTLM-protected check URL)"),
            Ok,
        )
    }

    // ------------------------------------------------------------------------------------
    // Admin
    // ------------------------------------------------------------------------------------

    pub(super) async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Reply, String> {
        let Some(base) = &self.opts.admin else {
            return Err("no --admin URL".into());
        };
        let url = base.with_path(path);
        // The stub's admin API takes octet-stream for file publishes, JSON for the rest.
        let content_type = if path.starts_with("/admin/files/") {
            "application/octet-stream"
        } else {
            "application/json"
        };
        let mut headers = vec![(header::CONTENT_TYPE, content_type.to_owned())];
        if let Some(token) = &self.opts.admin_token {
            headers.push((header::AUTHORIZATION, format!("Bearer {token}")));
        }
        let reply = raw::once(&url, self.tls_for(&url)?, method.clone(), &headers, body)
            .await
            .map_err(|e| format!("admin {method} {path}: {e}"))?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(format!("admin {method} {path}: {}", reply.summary()))
        }
    }

    pub(super) fn key_path(&self) -> String {
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

    /// Publishes the probe image and its catalog as `version` (pending on the server). With
    /// `--trust` the suite publishes no catalog of its own: the server under test must sign
    /// what its administrator publishes (`ucupdate-server serve --sign-cert`), as it would a
    /// vendor package without one, or the catalog checks fail.
    pub(super) async fn publish(&self, version: FirmwareVersion) -> Result<(), String> {
        let image = self.device().image.clone();
        let catalog = FileName::new(&format!("{}.cat", image.stem()))
            .map_err(|e| format!("catalog name for {image}: {e}"))?;
        let mut files = vec![(image, probe_bytes(version, PROBE_IMAGE_BYTES))];
        if self.opts.trust.is_none() {
            files.push((
                catalog,
                Bytes::from(format!("ucupdate conformance catalog {version}\n")),
            ));
        }
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

    pub(super) async fn rule(&self, action: &str) -> Result<(), String> {
        let path = format!("/admin/rules/{}/{action}", self.key_path());
        self.admin(Method::POST, &path, Bytes::new())
            .await
            .map(drop)
    }

    /// The probe is a regular device, the derived MAC a test device; V1 published and approved.
    pub(super) async fn admin_setup(&self) -> Result<(), String> {
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

    pub(super) fn versions(&self) -> Result<[FirmwareVersion; 3], Stop> {
        let v1 = self.device().version;
        match newer(v1).and_then(|v2| Some([v1, v2, newer(v2)?])) {
            Some(v) => Ok(v),
            None => fail(format!(
                "probe version {v1} leaves no room for two newer versions"
            )),
        }
    }

    /// Moves the probe rule forward to `to`, doing each earlier step on the way.
    pub(super) async fn advance(&mut self, to: Stage) -> Result<[FirmwareVersion; 3], Stop> {
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

    pub(super) async fn baseline(&mut self) -> Result<Baseline, Stop> {
        if let Some(b) = &self.baseline {
            return b.clone();
        }
        let b = self.find_baseline().await;
        self.baseline = Some(b.clone());
        b
    }

    pub(super) async fn find_baseline(&mut self) -> Result<Baseline, Stop> {
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

    pub(super) async fn fetched(&mut self) -> Result<Vec<Fetched>, Stop> {
        if let Some(f) = &self.fetched {
            return f.clone();
        }
        let f = self.fetch_all().await;
        self.fetched = Some(f.clone());
        f
    }

    pub(super) async fn fetch_all(&mut self) -> Result<Vec<Fetched>, Stop> {
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
    pub(super) async fn image(&mut self) -> Result<Fetched, Stop> {
        let fetched = self.fetched().await?;
        match fetched.into_iter().find(|f| f.file.kind == FileKind::Image) {
            Some(f) => Ok(f),
            None => skip("the offer holds no .nbt image"),
        }
    }
}
