//! Learning a dialect from one captured exchange (a check and its reply).
//!
//! The captured device's values are recognised by their shapes (a MAC in any spelling, a
//! four-part version, a file name, a SIP URI, an ISO timestamp) and cross-checked with the
//! reply: the BaseURL of an offer names the device type, brand, model, revision and locale
//! (`.../DeviceUpdateFiles_Int/<type>/<brand>/<model>/<rev>/<locale>/<version>/<update type>`),
//! and the offered file names are the module's. Every byte outside the recognised values is
//! kept as captured. Where a capture allows two readings (two MACs, a version at two places, a
//! model that is not unique) learning stops and names the hint (`--mac`, `--version`,
//! `--model`) that decides it, instead of guessing. Credentials are never kept.

mod items;
mod reply;
mod scan;

use thiserror::Error;

use super::{Dialect, DialectError, MacFormat, FORBIDDEN_HEADERS};
use crate::version::FirmwareVersion;
use scan::Span;

/// One captured check and its reply.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub request: Vec<u8>,
    pub reply: Vec<u8>,
}

/// What the user told the learner: a value, or the field (element/attribute name) it is at.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    pub mac: Option<String>,
    pub version: Option<String>,
    pub model: Option<String>,
}

/// What was learned.
#[derive(Debug, Clone)]
pub struct Learned {
    pub dialect: Dialect,
    /// The dialect file (format 1), ready to write.
    pub toml: String,
    /// Header names left out because they carry credentials or belong to the connection.
    pub stripped_headers: Vec<String>,
    /// Placeholder name, captured value, and the field it was at.
    pub placeholders: Vec<(&'static str, String, String)>,
    /// Things the user should know (fields not found, guesses about "no update").
    pub notes: Vec<String>,
}

/// Why a capture could not be learned from.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LearnError {
    #[error("the captured check body is not XML this project can read: {0}")]
    RequestNotXml(String),
    #[error("the captured reply is not XML this project can read: {0}")]
    ReplyNotXml(String),
    #[error("ambiguous capture: {what}; pass {flag} to say which")]
    Ambiguous { what: String, flag: &'static str },
    #[error("{0}")]
    Missing(String),
    #[error("the learned dialect does not hold: {0}")]
    Dialect(#[from] DialectError),
}

const MAC_FLAG: &str = "--mac VALUE";
const VERSION_FLAG: &str = "--version VALUE (or --version FIELD, the element or attribute name)";
const MODEL_FLAG: &str = "--model VALUE (or --model FIELD)";

/// Learns a dialect named `name` from `exchange`.
pub fn learn(name: &str, exchange: &Exchange, hints: &Hints) -> Result<Learned, LearnError> {
    let text = std::str::from_utf8(&exchange.request)
        .map_err(|e| LearnError::RequestNotXml(e.to_string()))?;
    crate::xml::parse(text.as_bytes(), crate::xml::Limits::MESSAGE)
        .map_err(|e| LearnError::RequestNotXml(e.to_string()))?;
    if text.contains("{{") || text.contains("'''") {
        return Err(LearnError::RequestNotXml(
            "it holds `{{` or `'''`, which a dialect template cannot keep literally".into(),
        ));
    }
    let learned_reply = reply::learn(&exchange.reply)?;
    let mut spans = scan::values(text);
    let mut notes = learned_reply.notes.clone();

    // Several modules: the element of the first module's version repeats, once per module,
    // each holding a version. The first item becomes the `modules` section; the values of
    // the others are not the device's (nor ambiguous): they are the section's repeats.
    let is_version = |s: &Span| {
        s.value
            .parse::<FirmwareVersion>()
            .is_ok_and(|v| v.to_string() == s.value)
    };
    let repeat = spans.iter().find(|s| is_version(s)).and_then(|first| {
        let r = items::around(text, &items::elements(text), first.element_index)?;
        r.items
            .iter()
            .all(|(a, b)| {
                spans
                    .iter()
                    .any(|s| s.start >= *a && s.end <= *b && is_version(s))
            })
            .then_some(r)
    });
    if let Some(r) = &repeat {
        spans.retain(|s| s.start < r.first_end || s.end > r.end);
        notes.push(format!(
            "the check lists {} modules: learned as a repeated section (each module as the first one is written)",
            r.items.len()
        ));
    }
    let mut chosen: Vec<(&'static str, Span)> = Vec::new();

    // The MAC: any spelling; two different ones need --mac.
    let macs: Vec<&Span> = spans
        .iter()
        .filter(|s| MacFormat::of(&s.value).is_some())
        .collect();
    let mac_format = match pick_mac(&macs, hints.mac.as_deref())? {
        Some(spans) => {
            let format = MacFormat::of(&spans[0].value).expect("a MAC");
            chosen.extend(spans.into_iter().map(|s| ("mac", s.clone())));
            format
        }
        None => {
            notes.push("no MAC address in the check: the dialect sends none".into());
            MacFormat::parse("XX-XX-XX-XX-XX-XX")?
        }
    };

    // The running version: four parts, printed as we print it.
    let versions: Vec<&Span> = spans.iter().filter(|s| is_version(s)).collect();
    let version =
        pick(&versions, hints.version.as_deref(), "version", VERSION_FLAG)?.ok_or_else(|| {
            LearnError::Missing(
                "no four-part firmware version (like 1.0.522.101) in the captured check: \
                 is it an update check?"
                    .into(),
            )
        })?;
    chosen.push(("version", version.clone()));

    // Identity from the offer's BaseURL, where there is one; else by field name.
    let store = learned_reply.store_segments.clone();
    let fields: [(&'static str, usize, &[&str]); 5] = [
        ("device_type", 0, &["devicetype", "type", "kind", "class"]),
        (
            "brand",
            1,
            &["brand", "vendor", "maker", "manufacturer", "make", "oem"],
        ),
        ("model", 2, &["model", "product"]),
        (
            "revision",
            3,
            &["revision", "rev", "hw", "hardware", "hwrev"],
        ),
        ("locale", 4, &["locale", "lang", "language", "culture"]),
    ];
    for (placeholder, index, names) in fields {
        let candidates: Vec<&Span> = match &store {
            Some(segments) => spans
                .iter()
                .filter(|s| s.value == segments[index] && !taken(&chosen, s))
                .collect(),
            None => spans
                .iter()
                .filter(|s| {
                    !taken(&chosen, s) && names.iter().any(|n| s.field.eq_ignore_ascii_case(n))
                })
                .collect(),
        };
        let hint = (placeholder == "model")
            .then_some(hints.model.as_deref())
            .flatten();
        let flag = if placeholder == "model" {
            MODEL_FLAG
        } else {
            ""
        };
        let found = if candidates.len() > 1 && hint.is_none() {
            // Prefer the one whose field name says what it is.
            let named: Vec<&Span> = candidates
                .iter()
                .copied()
                .filter(|s| names.iter().any(|n| s.field.eq_ignore_ascii_case(n)))
                .collect();
            if named.len() == 1 {
                Some(named[0])
            } else if flag.is_empty() {
                return Err(LearnError::Ambiguous {
                    what: format!(
                        "the {placeholder} {:?} is at {}",
                        candidates[0].value,
                        places(&candidates)
                    ),
                    flag: "--model FIELD after renaming, or edit the learned file",
                });
            } else {
                return Err(LearnError::Ambiguous {
                    what: format!(
                        "the {placeholder} {:?} is at {}",
                        candidates[0].value,
                        places(&candidates)
                    ),
                    flag,
                });
            }
        } else {
            pick(&candidates, hint, placeholder, flag)?
        };
        match found {
            Some(s) => chosen.push((placeholder, s.clone())),
            None if placeholder == "model" => {
                return Err(LearnError::Ambiguous {
                    what: "the model is not recognisable in the check (the reply has no BaseURL to cross-check with)".into(),
                    flag: MODEL_FLAG,
                })
            }
            None => notes.push(format!("no {placeholder} found in the check: it stays as captured")),
        }
    }

    // Module file name: an offered file's name, or a firmware-looking file name.
    let offered = &learned_reply.file_names;
    let file = spans.iter().find(|s| {
        !taken(&chosen, s) && (offered.contains(&s.value) || looks_like_firmware_file(&s.value))
    });
    match file {
        Some(s) => chosen.push(("file_name", s.clone())),
        None => notes.push("no module file name found in the check".into()),
    }
    // In a module section each module's update type differs: the first item's value that is
    // its file name's stem (`UpdateType="CPE"` beside `FileName="CPE.nbt"`) is a placeholder.
    if let (Some(r), Some(f)) = (&repeat, file) {
        let stem = f
            .value
            .rsplit_once('.')
            .map_or(f.value.as_str(), |(s, _)| s);
        let in_first = |s: &Span| s.start >= r.start && s.end <= r.first_end;
        if let Some(t) = spans
            .iter()
            .find(|s| in_first(s) && in_first(f) && !taken(&chosen, s) && s.value == stem)
        {
            chosen.push(("update_type", t.clone()));
        }
    }
    for (placeholder, test) in [
        (
            "serial",
            &(|s: &Span| {
                ["serial", "serialnumber", "sn", "serialno"]
                    .iter()
                    .any(|n| s.field.eq_ignore_ascii_case(n))
            }) as &dyn Fn(&Span) -> bool,
        ),
        ("user", &|s: &Span| {
            s.value.starts_with("sip:") || s.field.to_ascii_lowercase().contains("user")
        }),
        ("timestamp", &|s: &Span| {
            looks_like_timestamp(&s.value) || s.field.to_ascii_lowercase().contains("stamp")
        }),
    ] {
        let candidates: Vec<&Span> = spans
            .iter()
            .filter(|s| !taken(&chosen, s) && test(s))
            .collect();
        if let Some(s) = candidates.first() {
            chosen.push((placeholder, (*s).clone()));
        }
    }

    // The template: captured bytes with the chosen spans replaced, in order, and the module
    // items after the first replaced by the section's end.
    chosen.sort_by_key(|(_, s)| s.start);
    let mut edits: Vec<(usize, usize, String)> = chosen
        .iter()
        .map(|(p, s)| (s.start, s.end, format!("{{{{{p}}}}}")))
        .collect();
    if let Some(r) = &repeat {
        edits.push((r.start, r.start, "{{#modules}}".into()));
        edits.push((r.first_end, r.end, "{{/modules}}".into()));
        edits.sort_by_key(|(start, end, _)| (*start, *end));
    }
    let mut body = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, with) in &edits {
        body.push_str(&text[at..*start]);
        body.push_str(with);
        at = *end;
    }
    body.push_str(&text[at..]);

    let mut headers = Vec::new();
    let mut stripped = Vec::new();
    for (k, v) in &exchange.headers {
        if FORBIDDEN_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
            stripped.push(k.clone());
        } else {
            headers.push((k.clone(), v.clone()));
        }
    }
    let toml = write_toml(
        name,
        exchange,
        &headers,
        mac_format,
        &body,
        &learned_reply.toml,
    );
    let dialect = Dialect::from_toml(&toml)?;
    Ok(Learned {
        dialect,
        toml,
        stripped_headers: stripped,
        placeholders: chosen
            .into_iter()
            .map(|(p, s)| (p, s.value, s.field))
            .collect(),
        notes,
    })
}

fn taken(chosen: &[(&'static str, Span)], s: &Span) -> bool {
    chosen.iter().any(|(_, c)| c.start == s.start)
}

fn places(spans: &[&Span]) -> String {
    spans
        .iter()
        .map(|s| format!("`{}`", s.field))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The spans of the device's MAC: every spelling of one address; two addresses need `hint`.
fn pick_mac<'a>(
    macs: &[&'a Span],
    hint: Option<&str>,
) -> Result<Option<Vec<&'a Span>>, LearnError> {
    let address = |s: &Span| s.value.parse::<crate::identity::MacAddress>().ok();
    let want = match hint {
        Some(h) => Some(
            h.parse::<crate::identity::MacAddress>()
                .map_err(|e| LearnError::Missing(format!("--mac: {e}")))?,
        ),
        None => {
            let mut distinct: Vec<_> = macs.iter().filter_map(|s| address(s)).collect();
            distinct.dedup();
            distinct.sort_by_key(|m| m.octets());
            distinct.dedup();
            if distinct.len() > 1 {
                return Err(LearnError::Ambiguous {
                    what: format!(
                        "two MAC addresses ({}) at {}",
                        macs.iter()
                            .map(|s| s.value.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        places(macs)
                    ),
                    flag: MAC_FLAG,
                });
            }
            distinct.first().copied()
        }
    };
    let Some(want) = want else { return Ok(None) };
    let found: Vec<&Span> = macs
        .iter()
        .copied()
        .filter(|s| address(s) == Some(want))
        .collect();
    if found.is_empty() {
        return Err(LearnError::Missing(format!(
            "--mac {want} is not in the captured check"
        )));
    }
    Ok(Some(found))
}

/// One span among `candidates`; `hint` is a value or a field name. Two candidates and no hint
/// is ambiguous.
fn pick<'a>(
    candidates: &[&'a Span],
    hint: Option<&str>,
    what: &str,
    flag: &'static str,
) -> Result<Option<&'a Span>, LearnError> {
    let narrowed: Vec<&Span> = match hint {
        None => candidates.to_vec(),
        Some(h) => {
            let by_field: Vec<&Span> = candidates
                .iter()
                .copied()
                .filter(|s| s.field.eq_ignore_ascii_case(h))
                .collect();
            if by_field.is_empty() {
                candidates
                    .iter()
                    .copied()
                    .filter(|s| s.value == h)
                    .collect()
            } else {
                by_field
            }
        }
    };
    match narrowed.len() {
        0 if hint.is_some() => Err(LearnError::Missing(format!(
            "the {what} given ({}) is not in the captured check",
            hint.unwrap_or_default()
        ))),
        0 => Ok(None),
        1 => Ok(Some(narrowed[0])),
        _ => Err(LearnError::Ambiguous {
            what: format!(
                "the {what} could be {} (at {})",
                narrowed
                    .iter()
                    .map(|s| format!("{:?}", s.value))
                    .collect::<Vec<_>>()
                    .join(" or "),
                places(&narrowed)
            ),
            flag,
        }),
    }
}

fn looks_like_firmware_file(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    [".nbt", ".bin", ".cab", ".img", ".ld", ".sip"]
        .iter()
        .any(|e| lower.ends_with(e))
        && crate::identity::FileName::new(value).is_ok()
}

fn looks_like_timestamp(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && (b.len() == 10 || b[10] == b'T' || b[10] == b' ')
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn write_toml(
    name: &str,
    exchange: &Exchange,
    headers: &[(String, String)],
    mac: MacFormat,
    body: &str,
    reply: &str,
) -> String {
    let headers = headers
        .iter()
        .map(|(k, v)| format!("[{}, {}]", toml_string(k), toml_string(v)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "# Learned by `ucupdate-sim dialect learn` from one captured exchange.\n\
         # Placeholders ({{{{name}}}}) mark the device's values; every other byte is as captured.\n\
         format = 1\nname = {}\n\n[request]\nmethod = {}\npath = {}\nheaders = [{headers}]\n\
         mac_format = {}\nbody = '''\n{body}'''\n\n[reply]\n{reply}",
        toml_string(name),
        toml_string(&exchange.method),
        toml_string(&exchange.path),
        toml_string(&mac.pattern()),
    )
}

#[cfg(test)]
mod tests;
