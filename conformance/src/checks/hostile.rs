//! The hostile-input checks: malformed and oversized bodies, path traversal; each ends with a
//! normal check, because refusing is only half of it: the server must keep serving.

use super::*;

/// The internal store root of OCS 2007 R2, and of Lync Server 2010 and later.
const R2_ROOT: &str = "/DeviceUpdateFiles_Int";
const LYNC_ROOT: &str = "/RequestHandler/Files";

/// The internal store root an offered `BaseURL` path is under.
pub(crate) fn store_root(path: &str) -> &'static str {
    if path
        .to_ascii_lowercase()
        .contains(&format!("{}/", LYNC_ROOT.to_ascii_lowercase()))
    {
        LYNC_ROOT
    } else {
        R2_ROOT
    }
}

impl Ctx<'_> {
    // ------------------------------------------------------------------------------------
    // Hostile input
    // ------------------------------------------------------------------------------------

    pub(super) async fn malformed_bodies(&mut self) -> Verdict {
        let good = self.encode(&self.request(self.device().version, Who::Regular));
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

    pub(super) async fn oversized_body(&mut self) -> Verdict {
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

    pub(super) async fn path_traversal(&mut self) -> Verdict {
        // Under the store root the server offers: R2's `/DeviceUpdateFiles_Int` or Lync's
        // `/RequestHandler/Files` (both, when no offer has been seen).
        let offered = match &self.baseline {
            Some(Ok(b)) => b.offer.base_url.trim().parse::<HttpUrl>().ok(),
            _ => None,
        };
        let roots: Vec<&str> = match offered.map(|u| store_root(&u.path)) {
            Some(root) => vec![root],
            None => vec![R2_ROOT, LYNC_ROOT],
        };
        let tails = [
            "../../../../etc/passwd",
            "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
            "..\\..\\..\\..\\windows\\win.ini",
            "..%5c..%5c..%5c..%5cwindows%5cwin.ini",
            "UCPhone/%2e%2e/%2e%2e/%2e%2e/state.json",
        ];
        let mut paths: Vec<String> = roots
            .iter()
            .flat_map(|root| tails.iter().map(move |t| format!("{root}/{t}")))
            .collect();
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
            "{} paths under {} refused ({}); then a normal check got 200",
            paths.len(),
            roots.join(" and "),
            statuses
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join("/")
        ))
    }
}
