//! The checks of the update check itself and of the offered downloads (internal site).

use super::*;

impl Ctx<'_> {
    // ------------------------------------------------------------------------------------
    // The checks: the update check
    // ------------------------------------------------------------------------------------

    pub(super) async fn check_accepted(&mut self) -> Verdict {
        let reply = self
            .post_raw(self.encode(&self.request(self.device().version, Who::Regular)))
            .await?;
        if reply.status != StatusCode::OK {
            return fail(format!("expected 200, got {}", reply.summary()));
        }
        let response = self
            .decode(&reply.body)
            .map_err(|e| format!("the 200 reply does not decode: {e}"))?;
        Ok(format!(
            "200 ({}), {}",
            reply
                .header(header::CONTENT_TYPE)
                .unwrap_or_else(|| "no Content-Type".into()),
            describe(&response)
        ))
    }

    pub(super) async fn unknown_elements(&mut self) -> Verdict {
        let body = self.encode(&self.request(self.device().version, Who::Regular));
        let body = inject_unknown(&body)
            .ok_or_else(|| "cannot place unknown elements in the probe request".to_owned())?;
        let reply = self.post_raw(body).await?;
        if reply.status != StatusCode::OK {
            return fail(format!(
                "a check with unknown elements and attributes got {}",
                reply.summary()
            ));
        }
        let response = self
            .decode(&reply.body)
            .map_err(|e| format!("the 200 reply does not decode: {e}"))?;
        Ok(format!("200, {}", describe(&response)))
    }

    pub(super) async fn no_update_on_approved(&mut self) -> Verdict {
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

    pub(super) async fn offer_when_behind(&mut self) -> Verdict {
        let approved = self.baseline().await?.approved;
        let Some(behind) = older(approved) else {
            return skip("the approved version is 0.0.0.0: nothing is older");
        };
        self.expect_offer(behind, approved).await
    }

    pub(super) async fn offer_when_ahead(&mut self) -> Verdict {
        let approved = self.baseline().await?.approved;
        let Some(ahead) = newer(approved) else {
            return skip("the approved version is the highest possible: nothing is newer");
        };
        self.expect_offer(ahead, approved).await
    }

    pub(super) async fn expect_offer(
        &self,
        running: FirmwareVersion,
        approved: FirmwareVersion,
    ) -> Verdict {
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

    pub(super) async fn offered_urls_resolve(&mut self) -> Verdict {
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

    pub(super) async fn downloads_not_empty(&mut self) -> Verdict {
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

    pub(super) async fn nbt_content_type(&mut self) -> Verdict {
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

    pub(super) async fn size_and_hash(&mut self) -> Verdict {
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

    pub(super) async fn range_requests(&mut self) -> Verdict {
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
}
