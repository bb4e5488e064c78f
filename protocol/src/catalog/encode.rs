//! Catalog encoding: the CTL the way makecat lays out a flat-file member, the unsigned
//! SignedData that `osslsigncode sign` accepts as input, and the signed form. Signing itself
//! (the private key) is the caller's: `ucupdate-server catalog create` and the simulator.

use super::der::{self, tag};
use super::{
    oid, Member, SignerInfo, TrustList, FILE_NAME_TAG, FLAT_FILE_SUBJECT_GUID, NAME_VALUE_FLAGS,
};

/// The CTL `SEQUENCE`. Its inner octets are what a signer's messageDigest covers.
pub fn encode_trust_list(list: &TrustList) -> Vec<u8> {
    let usage = der::seq(&[&der::oid(oid::CATALOG_LIST)]);
    let identifier = list
        .list_identifier
        .as_deref()
        .map(der::octets)
        .unwrap_or_default();
    let members: Vec<Vec<u8>> = list.members.iter().map(member).collect();
    der::seq(&[
        &usage,
        &identifier,
        &der::encode_time(list.this_update),
        &der::algorithm(&list.member_algorithm),
        &der::tlv(tag::SEQUENCE, &members.concat()),
    ])
}

fn member(m: &Member) -> Vec<u8> {
    let mut attributes = Vec::new();
    if let Some(name) = &m.file_name {
        let value: Vec<u8> = name
            .encode_utf16()
            .chain(std::iter::once(0))
            .flat_map(u16::to_le_bytes)
            .collect();
        let name_value = der::seq(&[
            &der::bmp(FILE_NAME_TAG),
            &der::uint(NAME_VALUE_FLAGS),
            &der::octets(&value),
        ]);
        attributes.push(attribute(oid::CAT_NAMEVALUE, &name_value));
    }
    if let Some(digest) = &m.digest {
        // CAT_MEMBERINFO { subject GUID, certVersion 512 }: what makecat writes; readers skip it.
        let info = der::seq(&[&der::bmp(FLAT_FILE_SUBJECT_GUID), &der::uint(512)]);
        attributes.push(attribute(oid::CAT_MEMBERINFO, &info));
        // SpcLink ::= [2] SpcString, SpcString ::= [0] IMPLICIT BMPString: "<<<Obsolete>>>".
        let obsolete: Vec<u8> = "<<<Obsolete>>>"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        let link = der::tlv(tag::context(2), &der::tlv(0x80, &obsolete));
        let indirect = der::seq(&[
            &der::seq(&[&der::oid(oid::SPC_CAB_DATA), &link]),
            &der::seq(&[
                &der::algorithm(digest.algorithm().oid()),
                &der::octets(digest.value()),
            ]),
        ]);
        attributes.push(attribute(oid::SPC_INDIRECT_DATA, &indirect));
    }
    der::seq(&[&der::octets(&m.tag), &der::set_of(attributes)])
}

fn attribute(kind: &[u8], value: &[u8]) -> Vec<u8> {
    der::seq(&[&der::oid(kind), &der::set_of(vec![value.to_vec()])])
}

/// The `SignedData` around a CTL, no certificates and no signers: what makecat writes before
/// signtool signs it, and what `osslsigncode sign` takes as input.
pub fn encode_unsigned(ctl: &[u8]) -> Vec<u8> {
    signed_data(ctl, &[], &[])
}

/// The signed attributes a signer signs, as the DER `SET OF` the signature covers: contentType
/// szOID_CTL, signingTime, messageDigest (of [`super::Catalog::signed_content`]).
pub fn signed_attributes(message_digest: &[u8], signing_time: u64) -> Vec<u8> {
    der::set_of(vec![
        der::seq(&[
            &der::oid(oid::CONTENT_TYPE),
            &der::set_of(vec![der::oid(oid::CTL)]),
        ]),
        der::seq(&[
            &der::oid(oid::SIGNING_TIME),
            &der::set_of(vec![der::encode_time(signing_time)]),
        ]),
        der::seq(&[
            &der::oid(oid::MESSAGE_DIGEST),
            &der::set_of(vec![der::octets(message_digest)]),
        ]),
    ])
}

/// A signed catalog: `ctl` (from [`encode_trust_list`]), the certificates to embed (signer
/// first, then any intermediates) and one signer.
pub fn encode_signed(ctl: &[u8], certificates: &[Vec<u8>], signer: &SignerInfo) -> Vec<u8> {
    signed_data(ctl, certificates, std::slice::from_ref(signer))
}

fn signed_data(ctl: &[u8], certificates: &[Vec<u8>], signers: &[SignerInfo]) -> Vec<u8> {
    let digest_algorithms = der::set_of(
        signers
            .iter()
            .map(|s| der::algorithm(s.digest_algorithm.oid()))
            .collect(),
    );
    let content_info = der::seq(&[&der::oid(oid::CTL), &der::tlv(tag::context(0), ctl)]);
    let certs = if certificates.is_empty() {
        Vec::new()
    } else {
        der::tlv(tag::context(0), &certificates.concat())
    };
    let signer_infos: Vec<Vec<u8>> = signers.iter().map(signer_info).collect();
    let sd = der::seq(&[
        &der::uint(1),
        &digest_algorithms,
        &content_info,
        &certs,
        &der::tlv(tag::SET, &signer_infos.concat()),
    ]);
    der::seq(&[&der::oid(oid::SIGNED_DATA), &der::tlv(tag::context(0), &sd)])
}

fn signer_info(s: &SignerInfo) -> Vec<u8> {
    // The signed attributes travel as [0] IMPLICIT: the SET's tag replaced, its bytes kept.
    let attrs = match &s.signed_attributes {
        Some(a) => {
            let mut bytes = a.der.clone();
            if let Some(first) = bytes.first_mut() {
                *first = tag::context(0);
            }
            bytes
        }
        None => Vec::new(),
    };
    der::seq(&[
        &der::uint(1),
        &der::seq(&[&s.issuer, &der::tlv(tag::INTEGER, &s.serial)]),
        &der::algorithm(s.digest_algorithm.oid()),
        &attrs,
        &signature_algorithm(&s.signature_algorithm),
        &der::octets(&s.signature),
    ])
}

/// ECDSA AlgorithmIdentifiers carry no parameters (RFC 5758); RSA ones carry NULL.
fn signature_algorithm(id: &[u8]) -> Vec<u8> {
    if matches!(
        id,
        oid::ECDSA_WITH_SHA256 | oid::ECDSA_WITH_SHA384 | oid::EC_PUBLIC_KEY
    ) {
        der::seq(&[&der::oid(id)])
    } else {
        der::algorithm(id)
    }
}
