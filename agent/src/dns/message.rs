//! The two DNS messages discovery needs, as bytes: an A or AAAA query for one name, and the
//! addresses in its reply. No I/O. Replies are untrusted input: every read is bounds-checked,
//! compression pointers are followed a bounded number of times, and the reply must echo our
//! id and question before its answers count.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
/// Enough for any legal name; a loop of pointers stops here.
const MAX_POINTERS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("not a valid DNS name")]
    BadName,
    #[error("reply is malformed: {0}")]
    Malformed(&'static str),
    #[error("reply does not answer our question")]
    Mismatch,
}

/// What a reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub truncated: bool,
    /// 0 no error, 3 NXDOMAIN, anything else a failure.
    pub rcode: u8,
    /// Every A (or AAAA) record of class IN in the answer section; CNAME targets the server
    /// put in the same answer are included, other records ignored.
    pub addrs: Vec<IpAddr>,
}

/// A recursive query for `name` (absolute, with or without the trailing dot).
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, MessageError> {
    let mut out = Vec::with_capacity(name.len() + 18);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&FLAG_RD.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question, no other records
    write_name(&mut out, name)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

fn write_name(out: &mut Vec<u8>, name: &str) -> Result<(), MessageError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err(MessageError::BadName);
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 || !label.is_ascii() {
            return Err(MessageError::BadName);
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

/// Reads the reply to the query `encode_query(id, name, qtype)`.
pub fn parse_reply(buf: &[u8], id: u16, name: &str, qtype: u16) -> Result<Reply, MessageError> {
    let u16_at = |at: usize| -> Result<u16, MessageError> {
        buf.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(MessageError::Malformed("short"))
    };
    if u16_at(0)? != id {
        return Err(MessageError::Mismatch);
    }
    let flags = u16_at(2)?;
    if flags & FLAG_QR == 0 {
        return Err(MessageError::Malformed("not a reply"));
    }
    let questions = u16_at(4)?;
    let answers = u16_at(6)?;
    let mut pos = 12;
    if questions != 1 {
        return Err(MessageError::Mismatch);
    }
    let (asked, next) = read_name(buf, pos)?;
    pos = next;
    let want = name.strip_suffix('.').unwrap_or(name);
    if !asked.eq_ignore_ascii_case(want) || u16_at(pos)? != qtype || u16_at(pos + 2)? != CLASS_IN {
        return Err(MessageError::Mismatch);
    }
    pos += 4;
    let rcode = (flags & 0x000f) as u8;
    let truncated = flags & FLAG_TC != 0;
    let mut addrs = Vec::new();
    for _ in 0..answers {
        let (_, next) = read_name(buf, pos)?;
        pos = next;
        let rtype = u16_at(pos)?;
        let class = u16_at(pos + 2)?;
        let len = usize::from(u16_at(pos + 8)?);
        let data = buf
            .get(pos + 10..pos + 10 + len)
            .ok_or(MessageError::Malformed("short record"))?;
        pos += 10 + len;
        if class != CLASS_IN || rtype != qtype {
            continue;
        }
        match (rtype, data.len()) {
            (TYPE_A, 4) => addrs.push(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (TYPE_AAAA, 16) => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(data);
                addrs.push(IpAddr::V6(Ipv6Addr::from(octets)));
            }
            _ => {
                return Err(MessageError::Malformed(
                    "address record of the wrong length",
                ))
            }
        }
    }
    Ok(Reply {
        truncated,
        rcode,
        addrs,
    })
}

/// The name [`check_reply`] reads replies for (the fuzz seeds' question).
pub const FUZZ_NAME: &str = "ucupdates-r2.corp.example";

/// The body of the `dns_reply` fuzz target, public so that a property test runs it on stable:
/// reads `data` as the reply to an A and to an AAAA query for [`FUZZ_NAME`] (with the id `data`
/// starts with, so the fuzzer gets past the id check) and checks what every accepted reply
/// must satisfy. Malformed input is an `Err` from [`parse_reply`], never a panic; this function
/// panics only when an accepted reply breaks one of those rules.
pub fn check_reply(data: &[u8]) {
    let field = |at: usize| {
        data.get(at..at + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    for qtype in [TYPE_A, TYPE_AAAA] {
        let Ok(reply) = parse_reply(data, field(0), FUZZ_NAME, qtype) else {
            continue;
        };
        assert!(reply.rcode <= 0x0f, "rcode {}", reply.rcode);
        assert!(
            reply.addrs.len() <= usize::from(field(6)),
            "more addresses than answers"
        );
        assert!(
            reply.addrs.iter().all(|a| a.is_ipv4() == (qtype == TYPE_A)),
            "an address of the other family: {:?}",
            reply.addrs
        );
    }
}

/// The dotted name at `pos` and the position after it (after the first pointer, if any).
fn read_name(buf: &[u8], mut pos: usize) -> Result<(String, usize), MessageError> {
    let mut name = String::new();
    let mut after = None;
    let mut jumps = 0;
    loop {
        let len = *buf.get(pos).ok_or(MessageError::Malformed("short name"))?;
        match len {
            0 => {
                return Ok((name, after.unwrap_or(pos + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let low = *buf
                    .get(pos + 1)
                    .ok_or(MessageError::Malformed("short pointer"))?;
                jumps += 1;
                if jumps > MAX_POINTERS {
                    return Err(MessageError::Malformed("pointer loop"));
                }
                after.get_or_insert(pos + 2);
                pos = usize::from(l & 0x3f) << 8 | usize::from(low);
            }
            l if l & 0xc0 == 0 => {
                let label = buf
                    .get(pos + 1..pos + 1 + usize::from(l))
                    .ok_or(MessageError::Malformed("short label"))?;
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(&String::from_utf8_lossy(label));
                if name.len() > 255 {
                    return Err(MessageError::Malformed("name too long"));
                }
                pos += 1 + usize::from(l);
            }
            _ => return Err(MessageError::Malformed("reserved label type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as a server would build it, with the answer's owner name compressed.
    fn reply(id: u16, flags: u16, name: &str, qtype: u16, records: &[(u16, &[u8])]) -> Vec<u8> {
        let query = encode_query(id, name, qtype).unwrap();
        let mut out = query.clone();
        out[2..4].copy_from_slice(&(flags | FLAG_QR).to_be_bytes());
        out[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (rtype, data) in records {
            out.extend_from_slice(&[0xc0, 12]);
            out.extend_from_slice(&rtype.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&300u32.to_be_bytes());
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    const NAME: &str = "ucupdates-r2.corp.example";

    #[test]
    fn query_layout() {
        let q = encode_query(0x1234, "ucupdates-r2.corp.example.", TYPE_AAAA).unwrap();
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..25], b"\x0cucupdates-r2");
        assert_eq!(&q[q.len() - 4..], &[0, 28, 0, 1]);
        assert_eq!(encode_query(1, "", TYPE_A), Err(MessageError::BadName));
        assert_eq!(encode_query(1, "a..b", TYPE_A), Err(MessageError::BadName));
        assert_eq!(
            encode_query(1, &"x".repeat(64), TYPE_A),
            Err(MessageError::BadName)
        );
    }

    #[test]
    fn reads_addresses_and_skips_other_records() {
        let cname: &[u8] = b"\x03foo\xc0\x0c";
        let buf = reply(
            7,
            0,
            NAME,
            TYPE_A,
            &[
                (5, cname),
                (TYPE_A, &[10, 0, 0, 5]),
                (TYPE_A, &[10, 0, 0, 6]),
            ],
        );
        let r = parse_reply(&buf, 7, NAME, TYPE_A).unwrap();
        assert_eq!(
            r.addrs,
            [
                "10.0.0.5".parse::<IpAddr>().unwrap(),
                "10.0.0.6".parse().unwrap()
            ]
        );
        assert!(!r.truncated);
        let v6 = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let buf = reply(8, 0, NAME, TYPE_AAAA, &[(TYPE_AAAA, &v6)]);
        assert_eq!(
            parse_reply(&buf, 8, NAME, TYPE_AAAA).unwrap().addrs,
            ["::1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn nxdomain_truncation_and_mismatches() {
        let buf = reply(9, 3, NAME, TYPE_A, &[]);
        assert_eq!(parse_reply(&buf, 9, NAME, TYPE_A).unwrap().rcode, 3);
        let buf = reply(9, FLAG_TC, NAME, TYPE_A, &[]);
        assert!(parse_reply(&buf, 9, NAME, TYPE_A).unwrap().truncated);
        assert_eq!(
            parse_reply(&buf, 10, NAME, TYPE_A),
            Err(MessageError::Mismatch),
            "another id"
        );
        assert_eq!(
            parse_reply(&buf, 9, "evil.example", TYPE_A),
            Err(MessageError::Mismatch),
            "another name"
        );
        assert_eq!(
            parse_reply(&buf, 9, NAME, TYPE_AAAA),
            Err(MessageError::Mismatch),
            "another type"
        );
        let query = encode_query(9, NAME, TYPE_A).unwrap();
        assert!(
            matches!(
                parse_reply(&query, 9, NAME, TYPE_A),
                Err(MessageError::Malformed(_))
            ),
            "a query is no reply"
        );
    }

    #[test]
    fn pointer_loops_and_truncated_records_are_errors() {
        let mut buf = reply(1, 0, NAME, TYPE_A, &[(TYPE_A, &[1, 2, 3, 4])]);
        let answer = encode_query(1, NAME, TYPE_A).unwrap().len();
        // Point the answer's owner name at itself.
        buf[answer] = 0xc0;
        buf[answer + 1] = answer as u8;
        assert!(matches!(
            parse_reply(&buf, 1, NAME, TYPE_A),
            Err(MessageError::Malformed(_))
        ));
        let good = reply(1, 0, NAME, TYPE_A, &[(TYPE_A, &[1, 2, 3, 4])]);
        for cut in 0..good.len() {
            let _ = parse_reply(&good[..cut], 1, NAME, TYPE_A);
        }
        assert!(parse_reply(&good[..good.len() - 1], 1, NAME, TYPE_A).is_err());
    }

    /// The `dns_reply` fuzz target's seeds, so the proptest below starts where the fuzzer does.
    fn seeds() -> Vec<Vec<u8>> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/dns_reply");
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        seeds.sort();
        seeds
    }

    #[test]
    fn the_fuzz_seeds_cover_accepted_and_refused_replies() {
        let seeds = seeds();
        let id = |s: &[u8]| u16::from_be_bytes([s[0], s[1]]);
        let accepted = |qtype| {
            seeds
                .iter()
                .filter(|s| {
                    parse_reply(s, id(s), FUZZ_NAME, qtype).is_ok_and(|r| !r.addrs.is_empty())
                })
                .count()
        };
        assert!(accepted(TYPE_A) >= 2 && accepted(TYPE_AAAA) >= 1);
        assert!(seeds.iter().any(|s| matches!(
            parse_reply(s, id(s), FUZZ_NAME, TYPE_A),
            Err(MessageError::Malformed(_))
        )));
        for seed in &seeds {
            check_reply(seed);
        }
    }

    proptest::proptest! {
        /// What the fuzz target does, from its seeds: overwrite, cut or extend a valid reply
        /// anywhere; the reader refuses or accepts it, and an accepted one keeps the rules.
        #[test]
        fn mutated_replies_never_panic(
            pick in proptest::prelude::any::<proptest::sample::Index>(),
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 0..8),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            let seeds = seeds();
            let mut bytes = pick.get(&seeds).clone();
            for (at, value) in edits {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            bytes.extend_from_slice(&tail);
            check_reply(&bytes);
        }

        #[test]
        fn arbitrary_replies_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = parse_reply(&bytes, u16::from_be_bytes([bytes.first().copied().unwrap_or(0), bytes.get(1).copied().unwrap_or(0)]), NAME, TYPE_A);
        }
    }
}
