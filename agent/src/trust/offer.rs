//! Where and how much an offer may make the device download, decided before the first byte:
//! the file origin (scheme, host, port) must be the check endpoint's or one the configuration
//! allows, and the declared sizes must stay under `max_file_bytes` per file and
//! `max_offer_bytes` together. Pure: the machine calls [`check_offer`] on every offer, so the
//! agent and the simulated devices refuse the same things.

use std::fmt;

use ucupdate_protocol::{FirmwareVersion, HttpUrl, OfferedFile};

/// 512 MiB: twice the largest Phone Edition image seen; a larger claim is a hostile reply.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 512 << 20;
/// 1 GiB for all the files of one offer together.
pub const DEFAULT_MAX_OFFER_BYTES: u64 = 1 << 30;

/// Scheme, host (compared without case) and port of a URL: what a file URL must share with the
/// check that offered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn of(url: &HttpUrl) -> Origin {
        Origin {
            https: url.https,
            host: url.host.to_ascii_lowercase(),
            port: url.port,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The limits [`check_offer`] applies (`[trust]` in the agent's TOML).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferPolicy {
    /// Origins files may come from besides the check endpoint's own.
    pub allowed_file_origins: Vec<Origin>,
    pub max_file_bytes: u64,
    pub max_offer_bytes: u64,
    /// Nothing is installed unless the offer's catalog verifies (always, in the agent; the
    /// simulator turns it off only for `--trust none`).
    pub require_catalog: bool,
    /// `[trust] min_version`, the anti-rollback floor: an older offer than the current version
    /// is allowed (an administrator's restore) but never one below this.
    pub min_version: Option<FirmwareVersion>,
}

impl Default for OfferPolicy {
    fn default() -> Self {
        OfferPolicy {
            allowed_file_origins: Vec::new(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_offer_bytes: DEFAULT_MAX_OFFER_BYTES,
            require_catalog: true,
            min_version: None,
        }
    }
}

/// Why an offer was refused before anything was downloaded. Short on purpose: it is what
/// `ucupdate-agent status` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferRefusal {
    /// The files' base URL is on another origin than the check and not in `allowed_file_origins`.
    #[error("file origin not allowed")]
    ForeignOrigin,
    /// A file declares more than `max_file_bytes`.
    #[error("file larger than max_file_bytes")]
    FileTooLarge,
    /// The files together declare more than `max_offer_bytes`.
    #[error("offer larger than max_offer_bytes")]
    OfferTooLarge,
    /// The offered version is below `min_version`.
    #[error("version below min_version")]
    BelowFloor,
}

/// Whether the device may download `files` from under `base`, offered by a check that went to
/// `check_url`. Files without a declared size are bounded while streaming instead (the client's
/// `max_download_bytes`, which the agent sets to `max_file_bytes`).
///
/// `discovered_in`: the check went to `ucupdates-r2.<domain>`, a DNS record that points at the
/// pool, whose offers name the pool by its own FQDN (`pool01.<domain>`). A host in that domain
/// with the check's scheme and port is then the check's site too (discovery already trusts
/// that domain's DNS for the check itself).
pub fn check_offer(
    policy: &OfferPolicy,
    check_url: &HttpUrl,
    discovered_in: Option<&str>,
    base: &HttpUrl,
    files: &[OfferedFile],
) -> Result<(), OfferRefusal> {
    let origin = Origin::of(base);
    let check = Origin::of(check_url);
    let same_site = discovered_in.is_some_and(|domain| {
        let domain = domain.trim_matches('.').to_ascii_lowercase();
        origin.https == check.https
            && origin.port == check.port
            && !domain.is_empty()
            && origin
                .host
                .strip_suffix(domain.as_str())
                .is_some_and(|head| head.is_empty() || head.ends_with('.'))
    });
    if origin != check && !same_site && !policy.allowed_file_origins.contains(&origin) {
        return Err(OfferRefusal::ForeignOrigin);
    }
    let mut total: u64 = 0;
    for size in files.iter().filter_map(|f| f.size) {
        if size > policy.max_file_bytes {
            return Err(OfferRefusal::FileTooLarge);
        }
        total = total.saturating_add(size);
    }
    if total > policy.max_offer_bytes {
        return Err(OfferRefusal::OfferTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ucupdate_protocol::{FileKind, FileName};

    fn url(text: &str) -> HttpUrl {
        text.parse().unwrap()
    }

    fn sized(name: &str, size: Option<u64>) -> OfferedFile {
        OfferedFile {
            kind: FileKind::Image,
            file_name: FileName::new(name).unwrap(),
            size,
            sha256: None,
        }
    }

    const CHECK: &str = "http://pool.contoso.com/RequestHandler/ucdevice.upx";

    #[test]
    fn files_on_the_check_origin_pass_whatever_the_path() {
        let p = OfferPolicy::default();
        let files = [sized("CPE.nbt", Some(10))];
        for base in [
            "http://pool.contoso.com/DeviceUpdateFiles_Int/UCPhone/CPE",
            "http://POOL.contoso.com:80/RequestHandler/Files/UCPhone",
        ] {
            assert_eq!(
                check_offer(&p, &url(CHECK), None, &url(base), &files),
                Ok(())
            );
        }
    }

    #[test]
    fn another_scheme_host_or_port_is_refused_unless_allowed() {
        let files = [sized("CPE.nbt", Some(10))];
        for base in [
            "http://127.0.0.1:18081/evil",
            "https://pool.contoso.com/DeviceUpdateFiles_Int/x",
            "http://pool.contoso.com:8080/DeviceUpdateFiles_Int/x",
            "http://pool.contoso.com.evil/x",
        ] {
            assert_eq!(
                check_offer(
                    &OfferPolicy::default(),
                    &url(CHECK),
                    None,
                    &url(base),
                    &files
                ),
                Err(OfferRefusal::ForeignOrigin),
                "{base}"
            );
        }
        let allowed = OfferPolicy {
            allowed_file_origins: vec![Origin::of(&url("http://Files.contoso.com:8080/"))],
            ..OfferPolicy::default()
        };
        let base = url("http://files.contoso.com:8080/DeviceUpdateFiles_Int/x");
        assert_eq!(
            check_offer(&allowed, &url(CHECK), None, &base, &files),
            Ok(())
        );
        assert_eq!(
            Origin::of(&base).to_string(),
            "http://files.contoso.com:8080"
        );
    }

    #[test]
    fn a_discovered_check_admits_the_pool_of_its_domain_on_the_same_scheme_and_port() {
        let p = OfferPolicy::default();
        let check = url("http://ucupdates-r2.contoso.com/RequestHandler/ucdevice.upx");
        let files = [sized("CPE.nbt", Some(10))];
        let ok = |base: &str, domain| check_offer(&p, &check, domain, &url(base), &files);
        let pool = "http://POOL01.Contoso.com/DeviceUpdateFiles_Int/UCPhone/CPE";
        assert_eq!(ok(pool, Some("contoso.com.")), Ok(()));
        assert_eq!(ok("http://contoso.com/x", Some("contoso.com")), Ok(()));
        let foreign = Err(OfferRefusal::ForeignOrigin);
        assert_eq!(ok(pool, None), foreign, "only for a discovered check");
        for base in [
            "http://evilcontoso.com/x",
            "http://pool01.contoso.com.evil/x",
            "https://pool01.contoso.com/x",
            "http://pool01.contoso.com:8080/x",
            "http://127.0.0.1:18081/evil",
        ] {
            assert_eq!(ok(base, Some("contoso.com")), foreign, "{base}");
        }
        assert_eq!(ok(pool, Some(".")), foreign);
    }

    #[test]
    fn declared_sizes_are_bounded_per_file_and_per_offer() {
        let p = OfferPolicy {
            max_file_bytes: 100,
            max_offer_bytes: 150,
            ..OfferPolicy::default()
        };
        let (check, base) = (url(CHECK), url("http://pool.contoso.com/f"));
        let huge = [sized("CPE.nbt", Some(1_000_000_000_000_000))];
        assert_eq!(
            check_offer(&p, &check, None, &base, &huge),
            Err(OfferRefusal::FileTooLarge)
        );
        let two = [sized("CPE.nbt", Some(100)), sized("CPE.cat", Some(51))];
        assert_eq!(
            check_offer(&p, &check, None, &base, &two),
            Err(OfferRefusal::OfferTooLarge)
        );
        let fits = [sized("CPE.nbt", Some(100)), sized("CPE.cat", None)];
        assert_eq!(check_offer(&p, &check, None, &base, &fits), Ok(()));
        // Sizes that overflow a u64 when added saturate instead of wrapping under the cap.
        let unbounded = OfferPolicy {
            max_file_bytes: u64::MAX,
            max_offer_bytes: u64::MAX - 1,
            ..p
        };
        let wrap = [sized("a", Some(u64::MAX)), sized("b", Some(2))];
        assert_eq!(
            check_offer(&unbounded, &check, None, &base, &wrap),
            Err(OfferRefusal::OfferTooLarge)
        );
    }
}
