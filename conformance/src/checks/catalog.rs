//! The signed-catalog checks (issue 12), enabled by `--trust`: the offer names a `.cat`, it
//! downloads and verifies against the anchors with the agent's own verifier
//! ([`ucupdate_agent::trust`], the code a device runs), and it lists the offered image under its
//! file name with the SHA-256 of the bytes actually served. Without `--trust` they skip: a
//! suite that cannot tell a vendor's signer from anyone's has nothing to check.

use ucupdate_agent::trust::{
    verify_catalog, CatalogClock, CatalogPolicy, TrustAnchors, VerifiedCatalog,
};

use super::*;

impl Ctx<'_> {
    fn trust(&self) -> Result<&TrustAnchors, Stop> {
        self.opts.trust.as_ref().map_or_else(
            || {
                skip(
                    "needs --trust (the PEM roots a device trusts for catalogs, its [trust] \
                     catalog_roots)",
                )
            },
            Ok,
        )
    }

    /// The offered catalog, fetched: the `.cat` named after the image's stem when there is
    /// one (what a device looks for), else the only `.cat` offered.
    async fn offered_catalog(&mut self) -> Result<Fetched, Stop> {
        self.trust()?;
        let image = self.image().await?;
        let fetched = self.fetched().await?;
        let catalogs: Vec<_> = fetched
            .into_iter()
            .filter(|f| f.file.kind == FileKind::Catalog)
            .collect();
        let wanted = format!("{}.cat", image.file.file_name.stem());
        let names = || {
            catalogs
                .iter()
                .map(|f| f.file.file_name.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(f) = catalogs
            .iter()
            .find(|f| f.file.file_name.as_str().eq_ignore_ascii_case(&wanted))
        {
            return Ok(f.clone());
        }
        match catalogs.as_slice() {
            [] => fail(format!(
                "the offer of {} names no .cat catalog: a device that verifies cannot install \
                 it",
                image.file.file_name
            )),
            [only] => Ok(only.clone()),
            _ => fail(format!(
                "the offer names several catalogs ({}) and none is {wanted}",
                names()
            )),
        }
    }

    /// The offered catalog, verified against `--trust` at the suite's own clock.
    async fn verified_catalog(&mut self) -> Result<(String, VerifiedCatalog), Stop> {
        let catalog = self.offered_catalog().await?;
        let name = catalog.file.file_name.to_string();
        let body = match &catalog.reply {
            Ok(r) if r.status == StatusCode::OK && !r.body.is_empty() => r.body.clone(),
            Ok(r) => return fail(format!("{name}: {}", r.summary())),
            Err(e) => return fail(format!("{name}: {e}")),
        };
        let anchors = self.trust()?;
        let now = CatalogClock::Trusted(clock::unix_millis() / 1000);
        match verify_catalog(&body, anchors, now, CatalogPolicy::default()) {
            Ok(v) => Ok((name, v)),
            Err(refusal) => fail(format!(
                "{name} does not verify against --trust (code 0x{:x}): {refusal}",
                refusal.code()
            )),
        }
    }

    pub(super) async fn catalog_offered(&mut self) -> Verdict {
        let catalog = self.offered_catalog().await?;
        Ok(format!("{} at {}", catalog.file.file_name, catalog.url))
    }

    pub(super) async fn catalog_verifies(&mut self) -> Verdict {
        let (name, verified) = self.verified_catalog().await?;
        Ok(format!(
            "{name}: signed by a --trust root, {} members",
            verified.file_names().count()
        ))
    }

    pub(super) async fn catalog_lists_image(&mut self) -> Verdict {
        let (name, verified) = self.verified_catalog().await?;
        let image = self.image().await?;
        let body = match &image.reply {
            Ok(r) if r.status == StatusCode::OK => r.body.clone(),
            Ok(r) => return fail(format!("{}: {}", image.file.file_name, r.summary())),
            Err(e) => return fail(format!("{}: {e}", image.file.file_name)),
        };
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &body).as_ref());
        let file = image.file.file_name.as_str();
        match verified.verify_file(file, sha256) {
            Ok(()) => Ok(format!(
                "{name} lists {file} with the SHA-256 of the {} bytes served",
                body.len()
            )),
            Err(refusal) => fail(format!(
                "{name} (code 0x{:x}): {refusal}; it lists: {}",
                refusal.code(),
                verified.file_names().collect::<Vec<_>>().join(", ")
            )),
        }
    }
}
