//! Codec tests: round trips, the exact byte range the signature covers, malformed inputs, and
//! properties (arbitrary or mutated bytes never panic).

use super::der::{self, tag};
use super::*;
use proptest::prelude::*;

fn sample_list(members: Vec<Member>) -> TrustList {
    TrustList {
        list_identifier: Some(vec![0x11; 16]),
        this_update: 1_700_000_000,
        member_algorithm: oid::CATALOG_LIST_MEMBER2.to_vec(),
        members,
    }
}

fn sample_signer(attrs: Vec<u8>) -> SignerInfo {
    SignerInfo {
        issuer: der::seq(&[&der::tlv(tag::SET, b"")]),
        serial: vec![0x01, 0x02],
        digest_algorithm: DigestAlgorithm::Sha256,
        signed_attributes: Some(decode_attrs(&attrs)),
        signature_algorithm: oid::RSA_ENCRYPTION.to_vec(),
        signature: vec![0xab; 256],
    }
}

fn decode_attrs(set: &[u8]) -> SignedAttributes {
    // Go through the real decoder: wrap in a minimal signed catalog and read it back.
    let ctl = encode_trust_list(&sample_list(vec![]));
    let signer = SignerInfo {
        issuer: der::seq(&[]),
        serial: vec![1],
        digest_algorithm: DigestAlgorithm::Sha256,
        signed_attributes: Some(SignedAttributes {
            der: set.to_vec(),
            content_type: None,
            message_digest: None,
            signing_time: None,
        }),
        signature_algorithm: oid::RSA_ENCRYPTION.to_vec(),
        signature: vec![],
    };
    let cat = decode(&encode_signed(&ctl, &[], &signer)).unwrap();
    cat.signers[0].signed_attributes.clone().unwrap()
}

#[test]
fn a_mixed_catalog_round_trips_and_keeps_sha1_members_flagged() {
    let list = sample_list(vec![
        Member::new("ucupdate.bin", MemberDigest::sha256([7; 32])),
        Member::new("old.bin", MemberDigest::sha1([9; 20])),
        Member {
            tag: b"opaque".to_vec(),
            file_name: None,
            digest: None,
        },
    ]);
    let unsigned = encode_unsigned(&encode_trust_list(&list));
    let cat = decode(&unsigned).unwrap();
    assert_eq!(cat.trust_list, list);
    assert!(cat.signers.is_empty());
    assert!(cat.trust_list.members[1].digest.as_ref().unwrap().is_sha1());
    assert!(!cat.trust_list.members[0].digest.as_ref().unwrap().is_sha1());
}

#[test]
fn the_signed_content_is_the_ctl_without_its_sequence_header() {
    let ctl = encode_trust_list(&sample_list(vec![Member::new(
        "a.bin",
        MemberDigest::sha256([1; 32]),
    )]));
    let cat = decode(&encode_unsigned(&ctl)).unwrap();
    let header = ctl.len() - cat.signed_content.len();
    assert!(header == 2 || header == 3 || header == 4, "{header}");
    assert_eq!(&ctl[header..], &cat.signed_content[..]);
    assert_eq!(ctl[0], tag::SEQUENCE);
}

#[test]
fn a_signed_catalog_round_trips_with_its_attributes_and_certificates() {
    let attrs = signed_attributes(&[5; 32], 1_700_000_123);
    let signer = sample_signer(attrs.clone());
    let sa = signer.signed_attributes.as_ref().unwrap();
    assert_eq!(sa.der, attrs);
    assert_eq!(sa.message_digest.as_deref(), Some(&[5u8; 32][..]));
    assert_eq!(sa.signing_time, Some(1_700_000_123));
    assert_eq!(sa.content_type.as_deref(), Some(oid::CTL));

    let ctl = encode_trust_list(&sample_list(vec![Member::new(
        "a.bin",
        MemberDigest::sha256([1; 32]),
    )]));
    let certs = vec![der::seq(&[&der::uint(1)]), der::seq(&[&der::uint(2)])];
    let bytes = encode_signed(&ctl, &certs, &signer);
    let cat = decode(&bytes).unwrap();
    assert_eq!(cat.certificates, certs);
    assert_eq!(cat.signers, vec![signer]);
}

#[test]
fn malformed_catalogs_are_refused_with_a_reason() {
    let ctl = encode_trust_list(&sample_list(vec![]));
    let good = encode_unsigned(&ctl);
    assert!(decode(&good).is_ok());

    // CMS-style: the CTL wrapped in an OCTET STRING.
    let cms = der::seq(&[
        &der::oid(oid::SIGNED_DATA),
        &der::tlv(
            tag::context(0),
            &der::seq(&[
                &der::uint(1),
                &der::tlv(tag::SET, &[]),
                &der::seq(&[
                    &der::oid(oid::CTL),
                    &der::tlv(tag::context(0), &der::octets(&ctl)),
                ]),
                &der::tlv(tag::SET, &[]),
            ]),
        ),
    ]);
    assert!(matches!(decode(&cms), Err(CatalogError::BadDer { .. })));

    // Not a catalog list: a CTL of certificates.
    let mut other = ctl.clone();
    let at = other
        .windows(oid::CATALOG_LIST.len())
        .position(|w| w == oid::CATALOG_LIST)
        .unwrap();
    other[at + oid::CATALOG_LIST.len() - 1] = 9;
    assert!(matches!(
        decode(&encode_unsigned(&other)),
        Err(CatalogError::WrongOid { .. })
    ));

    // Trailing garbage, truncation, oversize.
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(decode(&trailing).is_err());
    assert!(decode(&good[..good.len() - 1]).is_err());
    let huge = vec![0u8; MAX_CATALOG_BYTES + 1];
    assert!(matches!(decode(&huge), Err(CatalogError::TooLarge { .. })));
}

#[test]
fn a_member_naming_two_files_is_refused() {
    let mut m = Member::new("a.bin", MemberDigest::sha256([1; 32]));
    m.digest = None;
    let one = encode_trust_list(&sample_list(vec![m]));
    // Duplicate the name/value attribute inside the member's SET by hand.
    let name_value = {
        let value: Vec<u8> = "b.bin\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let nv = der::seq(&[
            &der::bmp("File"),
            &der::uint(NAME_VALUE_FLAGS),
            &der::octets(&value),
        ]);
        der::seq(&[&der::oid(oid::CAT_NAMEVALUE), &der::set_of(vec![nv])])
    };
    let list = decode(&encode_unsigned(&one)).unwrap().trust_list;
    let first = &list.members[0];
    let first_attr = {
        let value: Vec<u8> = "a.bin\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let nv = der::seq(&[
            &der::bmp("File"),
            &der::uint(NAME_VALUE_FLAGS),
            &der::octets(&value),
        ]);
        der::seq(&[&der::oid(oid::CAT_NAMEVALUE), &der::set_of(vec![nv])])
    };
    let member = der::seq(&[
        &der::octets(&first.tag),
        &der::set_of(vec![first_attr, name_value]),
    ]);
    let ctl = der::seq(&[
        &der::seq(&[&der::oid(oid::CATALOG_LIST)]),
        &der::encode_time(0),
        &der::algorithm(oid::CATALOG_LIST_MEMBER),
        &der::seq(&[&member]),
    ]);
    assert_eq!(
        decode(&encode_unsigned(&ctl)),
        Err(CatalogError::Duplicate("member file name"))
    );
}

#[test]
fn a_member_without_indirect_data_takes_its_digest_from_a_hex_tag() {
    let full = Member::new("a.bin", MemberDigest::sha256([0xc3; 32]));
    let bare = Member {
        tag: full.tag.clone(),
        file_name: Some("a.bin".into()),
        digest: None,
    };
    let cat = decode(&encode_unsigned(&encode_trust_list(&sample_list(vec![
        bare,
    ]))))
    .unwrap();
    assert_eq!(cat.trust_list.members[0].digest, full.digest);
}

#[test]
fn member_digests_must_match_their_algorithm() {
    assert!(MemberDigest::new(DigestAlgorithm::Sha256, vec![0; 20]).is_err());
    assert!(MemberDigest::new(DigestAlgorithm::Sha512, vec![0; 64]).is_err());
    assert!(MemberDigest::new(DigestAlgorithm::Sha1, vec![0; 20]).is_ok());
}

#[test]
fn issuer_and_serial_come_out_of_a_certificate_shape() {
    let name = der::seq(&[&der::tlv(tag::SET, &[])]);
    let tbs = der::seq(&[
        &der::tlv(tag::context(0), &der::uint(2)),
        &der::uint(0x1234),
        &der::algorithm(oid::SHA256_WITH_RSA),
        &name,
    ]);
    let cert = der::seq(&[&tbs]);
    let (issuer, serial) = cert_issuer_and_serial(&cert).unwrap();
    assert_eq!(issuer, &name[..]);
    assert_eq!(serial, &[0x12, 0x34]);
    assert!(cert_issuer_and_serial(b"\x30\x00").is_none());
}

fn seed_catalog() -> Vec<u8> {
    let list = sample_list(vec![
        Member::new("ucupdate.bin", MemberDigest::sha256([7; 32])),
        Member::new("old.bin", MemberDigest::sha1([9; 20])),
    ]);
    let ctl = encode_trust_list(&list);
    let signer = sample_signer(signed_attributes(&[5; 32], 1_700_000_123));
    encode_signed(&ctl, &[der::seq(&[&der::uint(1)])], &signer)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
        let _ = cert_issuer_and_serial(&bytes);
    }

    #[test]
    fn mutated_catalogs_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = seed_catalog();
        for (at, value) in edits {
            let i = at % bytes.len();
            bytes[i] = value;
        }
        let _ = decode(&bytes);
        let keep = cut % (bytes.len() + 1);
        let _ = decode(&bytes[..keep]);
    }

    #[test]
    fn trust_lists_round_trip(
        names in proptest::collection::vec("[A-Za-z0-9._-]{1,40}", 0..12),
        sha1 in proptest::collection::vec(any::<bool>(), 12),
        seed in any::<u8>(),
        this_update in 0u64..4_102_444_800,
    ) {
        let members: Vec<Member> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let b = seed.wrapping_add(i as u8);
                let digest = if sha1[i] {
                    MemberDigest::sha1([b; 20])
                } else {
                    MemberDigest::sha256([b; 32])
                };
                Member::new(n, digest)
            })
            .collect();
        let list = TrustList { this_update, ..sample_list(members) };
        let cat = decode(&encode_unsigned(&encode_trust_list(&list))).unwrap();
        prop_assert_eq!(cat.trust_list, list);
    }
}
