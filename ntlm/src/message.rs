//! Wire layout of NTLM messages (MS-NLMP 2.2): the signature, the Type 1/2/3 fields, security
//! buffers and target-info AV pairs, as parsers that borrow from the token and builders that
//! produce it. Parsing never panics on hostile input: every read is bounds-checked and a bad
//! field is an `Err(&'static str)` naming what was wrong.

// The parsers for Type 1 and Type 3 serve only the acceptor.
#![cfg_attr(not(feature = "acceptor"), allow(dead_code))]

pub(crate) const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// Negotiate flags this crate reads or writes (MS-NLMP 2.2.2.5).
pub(crate) mod flags {
    pub(crate) const UNICODE: u32 = 0x0000_0001;
    pub(crate) const REQUEST_TARGET: u32 = 0x0000_0004;
    pub(crate) const SIGN: u32 = 0x0000_0010;
    pub(crate) const SEAL: u32 = 0x0000_0020;
    pub(crate) const NTLM: u32 = 0x0000_0200;
    pub(crate) const ALWAYS_SIGN: u32 = 0x0000_8000;
    pub(crate) const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
    pub(crate) const EXTENDED_SESSION_SECURITY: u32 = 0x0008_0000;
    pub(crate) const TARGET_INFO: u32 = 0x0080_0000;
    pub(crate) const VERSION: u32 = 0x0200_0000;
    pub(crate) const N128: u32 = 0x2000_0000;
    pub(crate) const KEY_EXCH: u32 = 0x4000_0000;
    pub(crate) const N56: u32 = 0x8000_0000;
}

/// AV pair ids (MS-NLMP 2.2.2.1).
pub(crate) mod av {
    pub(crate) const EOL: u16 = 0;
    pub(crate) const NB_COMPUTER_NAME: u16 = 1;
    pub(crate) const NB_DOMAIN_NAME: u16 = 2;
    pub(crate) const DNS_COMPUTER_NAME: u16 = 3;
    pub(crate) const DNS_DOMAIN_NAME: u16 = 4;
    pub(crate) const FLAGS: u16 = 6;
    pub(crate) const TIMESTAMP: u16 = 7;
    /// MsvAvFlags bit: the Type 3 carries a MIC.
    pub(crate) const FLAG_MIC_PRESENT: u32 = 0x0000_0002;
}

/// Where the MIC sits in a Type 3 whose payload starts at or after [`AUTH_HEADER_WITH_MIC`].
pub(crate) const MIC_OFFSET: usize = 72;
pub(crate) const AUTH_HEADER_WITH_MIC: usize = 88;

/// The product version we claim (6.1.7600, NTLM revision 15), as Windows 7 / 2008 R2 did.
pub(crate) const VERSION: [u8; 8] = [6, 1, 0xB0, 0x1D, 0, 0, 0, 15];

/// The message type of `token` if it starts with the NTLMSSP signature.
pub(crate) fn message_type(token: &[u8]) -> Option<u32> {
    let rest = token.strip_prefix(SIGNATURE.as_slice())?;
    let ty = u32_at(rest, 0)?;
    matches!(ty, 1..=3).then_some(ty)
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// A security buffer (length, max length, offset) at `at` in the header, resolved to its
/// payload, plus the offset for the caller's layout checks.
fn field(msg: &[u8], at: usize) -> Result<(&[u8], usize), &'static str> {
    let len = usize::from(u16_at(msg, at).ok_or("header truncated")?);
    let offset = u32_at(msg, at + 4).ok_or("header truncated")? as usize;
    if len == 0 {
        // Empty fields' offsets are not meaningful; some clients leave them zero.
        return Ok((&[], usize::MAX));
    }
    let end = offset.checked_add(len).ok_or("field out of range")?;
    let data = msg
        .get(offset..end)
        .ok_or("field points outside the message")?;
    Ok((data, offset))
}

fn check_header(msg: &[u8], ty: u32) -> Result<(), &'static str> {
    if !msg.starts_with(SIGNATURE) {
        return Err("no NTLMSSP signature");
    }
    match u32_at(msg, 8) {
        Some(t) if t == ty => Ok(()),
        Some(_) => Err("unexpected message type"),
        None => Err("header truncated"),
    }
}

/// The flags of a Type 1 (negotiate) message. Its domain and workstation fields are not
/// used for anything, so they are not read.
pub(crate) fn parse_negotiate(msg: &[u8]) -> Result<u32, &'static str> {
    check_header(msg, 1)?;
    u32_at(msg, 12).ok_or("header truncated")
}

/// The parts of a Type 2 (challenge) message that a client needs.
#[derive(Debug)]
pub(crate) struct Challenge<'a> {
    pub(crate) flags: u32,
    pub(crate) server_challenge: [u8; 8],
    /// Raw AV pairs; empty when the server sent none.
    pub(crate) target_info: &'a [u8],
}

pub(crate) fn parse_challenge(msg: &[u8]) -> Result<Challenge<'_>, &'static str> {
    check_header(msg, 2)?;
    field(msg, 12)?; // target name: must be in range, value unused
    let flags = u32_at(msg, 20).ok_or("header truncated")?;
    let server_challenge = msg
        .get(24..32)
        .and_then(|c| c.try_into().ok())
        .ok_or("header truncated")?;
    // Pre-NTLMv2 servers send a 32-byte Type 2 without the target-info field.
    let target_info = if flags & flags::TARGET_INFO != 0 && msg.len() >= 48 {
        field(msg, 40)?.0
    } else {
        &[]
    };
    Ok(Challenge {
        flags,
        server_challenge,
        target_info,
    })
}

/// The fields of a Type 3 (authenticate) message.
#[derive(Debug)]
pub(crate) struct Authenticate<'a> {
    pub(crate) nt_response: &'a [u8],
    pub(crate) domain: &'a [u8],
    pub(crate) user: &'a [u8],
    pub(crate) encrypted_session_key: &'a [u8],
    pub(crate) flags: u32,
    /// The MIC field, when the layout has room for one (payload at or after byte 88).
    pub(crate) mic: Option<[u8; 16]>,
}

pub(crate) fn parse_authenticate(msg: &[u8]) -> Result<Authenticate<'_>, &'static str> {
    check_header(msg, 3)?;
    let (_lm_response, lm_at) = field(msg, 12)?;
    let (nt_response, nt_at) = field(msg, 20)?;
    let (domain, domain_at) = field(msg, 28)?;
    let (user, user_at) = field(msg, 36)?;
    let (_workstation, ws_at) = field(msg, 44)?;
    let (encrypted_session_key, key_at) = field(msg, 52)?;
    let flags = u32_at(msg, 60).ok_or("header truncated")?;
    let payload_start = [lm_at, nt_at, domain_at, user_at, ws_at, key_at]
        .into_iter()
        .min()
        .unwrap_or(usize::MAX);
    if payload_start < 64 {
        return Err("field overlaps the header");
    }
    let mic = if payload_start >= AUTH_HEADER_WITH_MIC {
        msg.get(MIC_OFFSET..AUTH_HEADER_WITH_MIC)
            .and_then(|m| m.try_into().ok())
    } else {
        None
    };
    Ok(Authenticate {
        nt_response,
        domain,
        user,
        encrypted_session_key,
        flags,
        mic,
    })
}

/// One AV pair borrowed from a target-info block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AvPair<'a> {
    pub(crate) id: u16,
    pub(crate) value: &'a [u8],
}

/// AV pairs up to (not including) MsvAvEOL, which must be present. Bytes after the EOL are
/// ignored: the NTLMv2 blob carries four reserved zero bytes there.
pub(crate) fn parse_av_pairs(mut b: &[u8]) -> Result<Vec<AvPair<'_>>, &'static str> {
    let mut pairs = Vec::new();
    loop {
        let id = u16_at(b, 0).ok_or("AV pairs lack MsvAvEOL")?;
        let len = usize::from(u16_at(b, 2).ok_or("AV pair truncated")?);
        let value = b.get(4..4 + len).ok_or("AV pair truncated")?;
        if id == av::EOL {
            return Ok(pairs);
        }
        pairs.push(AvPair { id, value });
        b = &b[4 + len..];
    }
}

/// Encode AV pairs and the terminating MsvAvEOL. `None` if a value exceeds 65535 bytes.
pub(crate) fn encode_av_pairs(pairs: &[AvPair<'_>]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for pair in pairs {
        out.extend_from_slice(&pair.id.to_le_bytes());
        out.extend_from_slice(&u16::try_from(pair.value.len()).ok()?.to_le_bytes());
        out.extend_from_slice(pair.value);
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    Some(out)
}

/// Builds a message: fixed header fields in order, with security buffers whose payloads are
/// appended after the header in the order they were declared.
pub(crate) struct Builder {
    header: Vec<u8>,
    fields: Vec<(usize, Vec<u8>)>,
}

impl Builder {
    pub(crate) fn new(ty: u32) -> Builder {
        let mut header = SIGNATURE.to_vec();
        header.extend_from_slice(&ty.to_le_bytes());
        Builder {
            header,
            fields: Vec::new(),
        }
    }

    pub(crate) fn field(&mut self, data: &[u8]) {
        self.fields.push((self.header.len(), data.to_vec()));
        self.header.extend_from_slice(&[0; 8]);
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.header.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.header.extend_from_slice(b);
    }

    /// The message, or `None` if a field exceeds 65535 bytes.
    pub(crate) fn finish(self) -> Option<Vec<u8>> {
        let mut msg = self.header;
        for (at, data) in self.fields {
            let len = u16::try_from(data.len()).ok()?;
            let offset = u32::try_from(msg.len()).ok()?;
            msg[at..at + 2].copy_from_slice(&len.to_le_bytes());
            msg[at + 2..at + 4].copy_from_slice(&len.to_le_bytes());
            msg[at + 4..at + 8].copy_from_slice(&offset.to_le_bytes());
            msg.extend_from_slice(&data);
        }
        Some(msg)
    }
}

/// Like [`parse_av_pairs`], but an absent target info (old servers) is an empty list.
pub(crate) fn parse_av_pairs_or_empty(b: &[u8]) -> Result<Vec<AvPair<'_>>, crate::NtlmError> {
    if b.is_empty() {
        return Ok(Vec::new());
    }
    parse_av_pairs(b).map_err(crate::NtlmError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn av_pairs_round_trip_and_need_an_eol() {
        let pairs = [
            AvPair {
                id: av::NB_DOMAIN_NAME,
                value: b"D\0",
            },
            AvPair {
                id: av::TIMESTAMP,
                value: &[1; 8],
            },
        ];
        let Some(encoded) = encode_av_pairs(&pairs) else {
            panic!("small pairs must encode");
        };
        let Ok(back) = parse_av_pairs(&encoded) else {
            panic!("encoded pairs must parse");
        };
        assert_eq!(back.len(), 2);
        assert_eq!((back[1].id, back[1].value), (av::TIMESTAMP, &[1u8; 8][..]));
        assert!(parse_av_pairs(&encoded[..encoded.len() - 4]).is_err());
        assert!(parse_av_pairs(&[2, 0, 9, 0, 1]).is_err());
    }

    #[test]
    fn fields_pointing_outside_the_message_are_errors() {
        let mut msg = SIGNATURE.to_vec();
        msg.extend_from_slice(&2u32.to_le_bytes());
        msg.extend_from_slice(&[4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(field(&msg, 12), Err("field points outside the message"));
        assert_eq!(field(&msg, 20), Err("header truncated"));
    }

    #[test]
    fn builder_lays_payloads_after_the_header() {
        let mut b = Builder::new(1);
        b.u32(7);
        b.field(b"abc");
        let Some(msg) = b.finish() else {
            panic!("small message must build");
        };
        assert_eq!(field(&msg, 16), Ok((&b"abc"[..], 24)));
        let mut big = Builder::new(1);
        big.field(&vec![0; 70_000]);
        assert!(big.finish().is_none());
    }
}
