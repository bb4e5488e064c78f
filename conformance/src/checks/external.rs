//! The checks of the external site: NTLM on one connection, as devices outside the firewall
//! authenticate, and the external file share.

use super::*;

impl Ctx<'_> {
    // ------------------------------------------------------------------------------------
    // External site (NTLM)
    // ------------------------------------------------------------------------------------

    pub(super) fn check_headers(auth: Option<String>) -> Vec<(HeaderName, String)> {
        let mut headers = vec![(header::CONTENT_TYPE, CONTENT_TYPE_XML.to_owned())];
        if let Some(value) = auth {
            headers.push((header::AUTHORIZATION, value));
        }
        headers
    }

    /// Sends a Type 1 on `conn` and returns the server's Type 2.
    pub(super) async fn type1(
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

    pub(super) async fn external_anonymous(&mut self) -> Verdict {
        let url = self.external()?.clone();
        let body = self.encode(&self.request(self.device().version, Who::Regular));
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

    pub(super) async fn external_wrong_password(&mut self) -> Verdict {
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
        let body = self.encode(&self.request(self.device().version, Who::Regular));
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

    pub(super) async fn external_same_connection(&mut self) -> Verdict {
        let url = self.external()?.clone();
        let creds = self.credentials()?;
        let tls = self.tls_for(&url)?;
        let body = self.encode(&self.request(self.device().version, Who::Regular));
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
        let response = self
            .decode(&reply.body)
            .map_err(|e| format!("the authenticated reply does not decode: {e}"))?;
        notes.push(format!("Type 3 -> 200 ({})", describe(&response)));
        Ok(notes.join(", "))
    }

    pub(super) async fn external_fresh_type3(&mut self) -> Verdict {
        let url = self.external()?.clone();
        let creds = self.credentials()?;
        let tls = self.tls_for(&url)?;
        let mut first = raw::connect(&url, tls).await?;
        let mut ntlm = ucupdate_ntlm::Client::new(creds, "UCCONF");
        let t2 = Self::type1(&mut first, &url.path, &mut ntlm).await?;
        let t3 = type3(&mut ntlm, &t2)?;
        let body = self.encode(&self.request(self.device().version, Who::Regular));
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

    pub(super) async fn external_download(&mut self) -> Verdict {
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
}
