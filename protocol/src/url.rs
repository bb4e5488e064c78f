//! A small absolute URL type (`http(s)://host[:port]/path[?query]`) shared by the agent, the
//! simulator and the server stub, plus percent-decoding. No I/O: resolving the host is the
//! caller's business.

use std::fmt;
use std::str::FromStr;

use crate::error::ProtocolError;

/// An absolute `http` or `https` URL. The host is kept as written (a name, an IPv4 address, or
/// an IPv6 address without its brackets); the port is always known.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Starts with `/`; includes the query, if any.
    pub path: String,
}

impl HttpUrl {
    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// `host:port` as an HTTP `Host` header and a socket address want it (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The same server with another path.
    pub fn with_path(&self, path: &str) -> HttpUrl {
        HttpUrl {
            path: path.to_owned(),
            ..self.clone()
        }
    }

    /// A check handler's URL as a person types it (a flag or a config field), with one meaning
    /// in every binary: a URL with a path is kept; `http(s)://host[:port]` (path `/`) gets
    /// `handler_path` (`wire::INTERNAL_HANDLER_PATH` or `EXTERNAL_HANDLER_PATH`); a bare
    /// `host[:port]` is `http://host[:port]` plus `handler_path`.
    pub fn handler(text: &str, handler_path: &str) -> Result<HttpUrl, ProtocolError> {
        let url: HttpUrl = if text.contains("://") {
            text.parse()?
        } else {
            format!("http://{text}").parse().map_err(|e| match e {
                ProtocolError::BadUrl { reason, .. } => ProtocolError::BadUrl {
                    text: text.to_owned(),
                    reason,
                },
                other => other,
            })?
        };
        Ok(if url.path == "/" {
            url.with_path(handler_path)
        } else {
            url
        })
    }

    /// This URL with `/name` appended to its path (for a file under a `BaseURL`).
    pub fn join(&self, name: &str) -> HttpUrl {
        let base = self.path.trim_end_matches('/');
        self.with_path(&format!("{base}/{name}"))
    }
}

impl FromStr for HttpUrl {
    type Err = ProtocolError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| ProtocolError::BadUrl {
            text: text.to_owned(),
            reason,
        };
        let (https, rest) = if let Some(rest) = strip_prefix_ci(text, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ci(text, "http://") {
            (false, rest)
        } else {
            return Err(bad("scheme must be http or https"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.contains('@') {
            return Err(bad("credentials in URLs are not accepted"));
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| bad("unclosed '[' in host"))?;
            let port = match &v6[end + 1..] {
                "" => default_port,
                p => p
                    .strip_prefix(':')
                    .ok_or_else(|| bad("junk after IPv6 host"))?
                    .parse()
                    .map_err(|_| bad("bad port"))?,
            };
            (v6[..end].to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), port.parse().map_err(|_| bad("bad port"))?),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(bad("bad character in host"));
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("white space in path"));
        }
        Ok(HttpUrl {
            https,
            host,
            port,
            path,
        })
    }
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme(), self.authority(), self.path)
    }
}

/// Decodes `%XX` escapes once. `None` for a malformed escape or a result that is not UTF-8.
/// `+` is left alone (it is a space only in form bodies, which this protocol does not use).
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(crate::hex::byte(bytes.get(i + 1..i + 3)?)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes everything but unreserved characters (RFC 3986), for query values.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handler_flag_means_the_same_in_every_binary() {
        let path = crate::wire::INTERNAL_HANDLER_PATH;
        for (text, want) in [
            (
                "http://127.0.0.1:28080",
                "http://127.0.0.1:28080/RequestHandler/ucdevice.upx",
            ),
            (
                "http://127.0.0.1:28080/",
                "http://127.0.0.1:28080/RequestHandler/ucdevice.upx",
            ),
            (
                "127.0.0.1:28080",
                "http://127.0.0.1:28080/RequestHandler/ucdevice.upx",
            ),
            (
                "pool.contoso.com",
                "http://pool.contoso.com:80/RequestHandler/ucdevice.upx",
            ),
            ("https://edge:4443/x/y.upx", "https://edge:4443/x/y.upx"),
        ] {
            assert_eq!(
                HttpUrl::handler(text, path).unwrap().to_string(),
                want,
                "{text}"
            );
        }
        let err = HttpUrl::handler("ftp://x", path).unwrap_err().to_string();
        assert!(err.contains("scheme must be http or https"), "{err}");
        let err = HttpUrl::handler("host:99999", path)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "invalid URL \"host:99999\": bad port");
    }

    #[test]
    fn parses_the_provisioned_forms() {
        let url: HttpUrl = "https://pool.contoso.com:443/RequestHandler/ucdevice.upx"
            .parse()
            .unwrap();
        assert!(url.https);
        assert_eq!(url.authority(), "pool.contoso.com:443");
        assert_eq!(url.path, "/RequestHandler/ucdevice.upx");
        let url: HttpUrl = "http://[::1]:8080".parse().unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("::1", 8080, "/")
        );
        assert_eq!(url.to_string(), "http://[::1]:8080/");
        let url: HttpUrl = "HTTP://h?x=1".parse().unwrap();
        assert_eq!((url.port, url.path.as_str()), (80, "/?x=1"));
    }

    #[test]
    fn refuses_junk() {
        for text in [
            "ftp://x/",
            "https://",
            "https://:1/",
            "https://h:99999/",
            "https://u:p@h/",
            "https://h/a b",
        ] {
            assert!(text.parse::<HttpUrl>().is_err(), "{text}");
        }
    }

    #[test]
    fn join_and_percent_round_trip() {
        let base: HttpUrl = "http://h/DeviceUpdateFiles_Int/a/".parse().unwrap();
        assert_eq!(
            base.join("CPE.nbt").path,
            "/DeviceUpdateFiles_Int/a/CPE.nbt"
        );
        let text = "CONTOSO\\alice ü;#";
        assert_eq!(percent_decode(&percent_encode(text)).unwrap(), text);
        assert_eq!(percent_decode("%2"), None);
        // `u8::from_str_radix` takes a sign: `%+f` once decoded to 0x0F.
        assert_eq!(percent_decode("%+f"), None);
        assert_eq!(percent_decode("%-1"), None);
    }
}
