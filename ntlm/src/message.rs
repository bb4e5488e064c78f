//! Wire layout of NTLM messages (MS-NLMP 2.2): the signature, Type 1/2/3 fields, security
//! buffers and target-info AV pairs. Parsing never panics on hostile input.

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// The message type of `token` if it starts with the NTLMSSP signature.
pub(crate) fn message_type(token: &[u8]) -> Option<u32> {
    let rest = token.strip_prefix(SIGNATURE.as_slice())?;
    let ty = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
    matches!(ty, 1..=3).then_some(ty)
}
