//! Catalog decoding: PKCS#7 SignedData -> CTL -> members, following one fixed schema.
//!
//! Unknown attributes (CAT_MEMBERINFO, OS attributes, Authenticode's SpcSpOpusInfo, timestamps
//! in the unsigned attributes, catalog-level extensions) are skipped without being descended
//! into; the attributes that carry a name or a digest must appear at most once per member, so a
//! member cannot name two files or two digests.

use super::der::{self, single, tag, Reader, Tlv};
use super::{
    oid, Catalog, CatalogError, DigestAlgorithm, Member, MemberDigest, SignedAttributes,
    SignerInfo, TrustList, FILE_NAME_TAG, MAX_ATTRIBUTES, MAX_CATALOG_BYTES, MAX_CERTIFICATES,
    MAX_FILE_NAME, MAX_MEMBERS, MAX_SIGNERS,
};

/// Decodes a catalog (signed or not) from its DER bytes.
pub fn decode(bytes: &[u8]) -> Result<Catalog, CatalogError> {
    if bytes.len() > MAX_CATALOG_BYTES {
        return Err(CatalogError::TooLarge {
            len: bytes.len(),
            cap: MAX_CATALOG_BYTES,
        });
    }
    let outer = single(bytes, "ContentInfo")?;
    let mut content_info = expect_seq(&outer, "ContentInfo")?;
    expect_oid(
        &mut content_info,
        oid::SIGNED_DATA,
        "ContentInfo.contentType",
    )?;
    let mut explicit = content_info.nested(tag::context(0), "ContentInfo.content")?;
    let mut sd = explicit.nested(tag::SEQUENCE, "SignedData")?;
    explicit.finish()?;
    content_info.finish()?;

    let version = der::small_uint(sd.expect(tag::INTEGER)?.content, "SignedData.version")?;
    if version != 1 {
        return Err(CatalogError::BadDer {
            what: "SignedData.version",
            reason: "PKCS#7 catalogs are version 1",
        });
    }
    // digestAlgorithms: informational; each signer names its own.
    sd.expect(tag::SET)?;

    let mut inner = sd.nested(tag::SEQUENCE, "SignedData.contentInfo")?;
    expect_oid(&mut inner, oid::CTL, "SignedData.contentInfo.contentType")?;
    let mut wrapped = inner.nested(tag::context(0), "SignedData.contentInfo.content")?;
    if wrapped.peek_tag() == Some(tag::OCTET_STRING) {
        return Err(CatalogError::BadDer {
            what: "SignedData.contentInfo.content",
            reason: "a CMS-style OCTET STRING wrapper: catalogs carry the CTL directly",
        });
    }
    let ctl = wrapped.expect(tag::SEQUENCE)?;
    wrapped.finish()?;
    inner.finish()?;
    let trust_list = trust_list(ctl.content)?;

    let mut certificates = Vec::new();
    if let Some(certs) = sd.optional(tag::context(0))? {
        let mut r = Reader::new(certs.content, "SignedData.certificates");
        while !r.is_empty() {
            if certificates.len() == MAX_CERTIFICATES {
                return Err(CatalogError::TooMany {
                    what: "certificates",
                    cap: MAX_CERTIFICATES,
                });
            }
            // Attribute certificates and other CHOICE arms carry context tags: skipped.
            let cert = r.any()?;
            if cert.tag == tag::SEQUENCE {
                certificates.push(cert.raw.to_vec());
            }
        }
    }
    sd.optional(tag::context(1))?; // crls: revocation is not checked from the catalog

    let mut signer_set = sd.nested(tag::SET, "SignedData.signerInfos")?;
    sd.finish()?;
    let mut signers = Vec::new();
    while !signer_set.is_empty() {
        if signers.len() == MAX_SIGNERS {
            return Err(CatalogError::TooMany {
                what: "signers",
                cap: MAX_SIGNERS,
            });
        }
        signers.push(signer_info(&signer_set.any()?)?);
    }

    Ok(Catalog {
        trust_list,
        signed_content: ctl.content.to_vec(),
        certificates,
        signers,
    })
}

/// `(issuer Name DER, serial INTEGER content)` of an X.509 certificate, for matching a
/// SignerInfo's IssuerAndSerialNumber. `None` when the bytes are not shaped like a certificate.
pub fn cert_issuer_and_serial(cert: &[u8]) -> Option<(&[u8], &[u8])> {
    let outer = single(cert, "Certificate").ok()?;
    let mut c = Reader::new(outer.content, "Certificate");
    let mut tbs = c.nested(tag::SEQUENCE, "tbsCertificate").ok()?;
    tbs.optional(tag::context(0)).ok()?; // version
    let serial = tbs.expect(tag::INTEGER).ok()?;
    tbs.expect(tag::SEQUENCE).ok()?; // signature algorithm
    let issuer = tbs.expect(tag::SEQUENCE).ok()?;
    Some((issuer.raw, serial.content))
}

fn expect_seq<'a>(tlv: &Tlv<'a>, what: &'static str) -> Result<Reader<'a>, CatalogError> {
    if tlv.tag != tag::SEQUENCE {
        return Err(CatalogError::UnexpectedTag {
            what,
            expected: tag::SEQUENCE,
            found: Some(tlv.tag),
        });
    }
    Ok(Reader::new(tlv.content, what))
}

fn expect_oid(r: &mut Reader<'_>, want: &[u8], what: &'static str) -> Result<(), CatalogError> {
    let got = r.expect(tag::OID)?;
    if got.content == want {
        Ok(())
    } else {
        Err(CatalogError::WrongOid {
            what,
            found: der::oid_to_string(got.content),
        })
    }
}

/// `AlgorithmIdentifier`: the OID's content octets; parameters are not needed by anything here.
fn algorithm<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], CatalogError> {
    let mut alg = r.nested(tag::SEQUENCE, what)?;
    let id = alg.expect(tag::OID)?;
    Ok(id.content)
}

fn trust_list(content: &[u8]) -> Result<TrustList, CatalogError> {
    let mut r = Reader::new(content, "CertificateTrustList");
    r.optional(tag::INTEGER)?; // version, DEFAULT v1
    let mut usage = r.nested(tag::SEQUENCE, "CTL.subjectUsage")?;
    let mut is_catalog = false;
    let mut first = None;
    while !usage.is_empty() {
        let usage_oid = usage.expect(tag::OID)?.content;
        is_catalog |= usage_oid == oid::CATALOG_LIST;
        first.get_or_insert(usage_oid);
    }
    if !is_catalog {
        return Err(CatalogError::WrongOid {
            what: "CTL.subjectUsage (no szOID_CATALOG_LIST)",
            found: first.map(der::oid_to_string).unwrap_or_default(),
        });
    }
    let list_identifier = r.optional(tag::OCTET_STRING)?.map(|t| t.content.to_vec());
    r.optional(tag::INTEGER)?; // sequenceNumber
    let this_update = der::time(&r.any()?, "CTL.thisUpdate")?;
    if matches!(r.peek_tag(), Some(tag::UTC_TIME | tag::GENERALIZED_TIME)) {
        r.any()?; // nextUpdate
    }
    let member_algorithm = algorithm(&mut r, "CTL.subjectAlgorithm")?.to_vec();
    let mut members = Vec::new();
    if let Some(subjects) = r.optional(tag::SEQUENCE)? {
        let mut s = Reader::new(subjects.content, "CTL.trustedSubjects");
        while !s.is_empty() {
            if members.len() == MAX_MEMBERS {
                return Err(CatalogError::TooMany {
                    what: "members",
                    cap: MAX_MEMBERS,
                });
            }
            members.push(member(&s.any()?)?);
        }
    }
    r.optional(tag::context(0))?; // ctlExtensions: catalog-level attributes, skipped
    r.finish()?;
    Ok(TrustList {
        list_identifier,
        this_update,
        member_algorithm,
        members,
    })
}

fn member(tlv: &Tlv<'_>) -> Result<Member, CatalogError> {
    let mut r = expect_seq(tlv, "TrustedSubject")?;
    let tag_bytes = r.expect(tag::OCTET_STRING)?.content.to_vec();
    let mut file_name = None;
    let mut digest = None;
    if let Some(attrs) = r.optional(tag::SET)? {
        let mut a = Reader::new(attrs.content, "TrustedSubject.attributes");
        let mut count = 0;
        while !a.is_empty() {
            count += 1;
            if count > MAX_ATTRIBUTES {
                return Err(CatalogError::TooMany {
                    what: "member attributes",
                    cap: MAX_ATTRIBUTES,
                });
            }
            let (kind, values) = attribute(&a.any()?)?;
            match kind {
                oid::CAT_NAMEVALUE => {
                    for value in values {
                        if let Some(name) = name_value_file(&value)? {
                            if file_name.replace(name).is_some() {
                                return Err(CatalogError::Duplicate("member file name"));
                            }
                        }
                    }
                }
                oid::SPC_INDIRECT_DATA => {
                    let [value] = values.as_slice() else {
                        return Err(CatalogError::Duplicate("member indirect data value"));
                    };
                    if digest.replace(indirect_data_digest(value)?).is_some() {
                        return Err(CatalogError::Duplicate("member indirect data"));
                    }
                }
                _ => {} // CAT_MEMBERINFO(2), OSAttr and others: understood as "not ours"
            }
        }
    }
    r.finish()?;
    let digest = match digest {
        Some(d) => Some(d),
        None => hash_tag_digest(&tag_bytes),
    };
    Ok(Member {
        tag: tag_bytes,
        file_name,
        digest,
    })
}

/// `Attribute ::= SEQUENCE { type OID, values SET OF ANY }`.
fn attribute<'a>(tlv: &Tlv<'a>) -> Result<(&'a [u8], Vec<Tlv<'a>>), CatalogError> {
    let mut r = expect_seq(tlv, "Attribute")?;
    let kind = r.expect(tag::OID)?.content;
    let mut set = r.nested(tag::SET, "Attribute.values")?;
    r.finish()?;
    let mut values = Vec::new();
    while !set.is_empty() {
        if values.len() == MAX_ATTRIBUTES {
            return Err(CatalogError::TooMany {
                what: "attribute values",
                cap: MAX_ATTRIBUTES,
            });
        }
        values.push(set.any()?);
    }
    Ok((kind, values))
}

/// `CatNameValue ::= SEQUENCE { tag BMPString, flags INTEGER, value OCTET STRING }`; the file
/// name when the tag is "File" (compared case-insensitively, as Windows does).
fn name_value_file(value: &Tlv<'_>) -> Result<Option<String>, CatalogError> {
    let mut r = expect_seq(value, "CatNameValue")?;
    let name = der::bmp_string(r.expect(tag::BMP_STRING)?.content, "CatNameValue.tag")?;
    r.expect(tag::INTEGER)?;
    let data = r.expect(tag::OCTET_STRING)?.content;
    r.finish()?;
    if !name.eq_ignore_ascii_case(FILE_NAME_TAG) {
        return Ok(None);
    }
    // The value is UTF-16LE, usually NUL-terminated.
    if data.len() % 2 != 0 {
        return Err(CatalogError::BadFileName("odd number of bytes"));
    }
    let mut units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    while units.last() == Some(&0) {
        units.pop();
    }
    if units.is_empty() {
        return Err(CatalogError::BadFileName("empty"));
    }
    if units.len() > MAX_FILE_NAME {
        return Err(CatalogError::BadFileName("longer than 260 UTF-16 units"));
    }
    let text = String::from_utf16(&units).map_err(|_| CatalogError::BadFileName("not UTF-16"))?;
    if text.contains('\0') {
        return Err(CatalogError::BadFileName("embedded NUL"));
    }
    Ok(Some(text))
}

/// `SpcIndirectDataContent ::= SEQUENCE { data SpcAttributeTypeAndOptionalValue,
/// messageDigest DigestInfo }`; only the DigestInfo matters for a flat file.
fn indirect_data_digest(value: &Tlv<'_>) -> Result<MemberDigest, CatalogError> {
    let mut r = expect_seq(value, "SpcIndirectDataContent")?;
    r.expect(tag::SEQUENCE)?; // data: type and (obsolete) link
    let mut info = r.nested(tag::SEQUENCE, "DigestInfo")?;
    r.finish()?;
    let algorithm = DigestAlgorithm::from_oid(algorithm(&mut info, "DigestInfo.algorithm")?)?;
    let value = info.expect(tag::OCTET_STRING)?.content.to_vec();
    info.finish()?;
    MemberDigest::new(algorithm, value)
}

/// A member without indirect data: its tag may be the digest in hex (UTF-16LE, as makecat
/// writes it) or the raw digest bytes. Anything else leaves the member without a digest, and
/// the verifier will not match it.
fn hash_tag_digest(tag_bytes: &[u8]) -> Option<MemberDigest> {
    let raw = |bytes: &[u8]| match bytes.len() {
        20 => MemberDigest::new(DigestAlgorithm::Sha1, bytes.to_vec()).ok(),
        32 => MemberDigest::new(DigestAlgorithm::Sha256, bytes.to_vec()).ok(),
        _ => None,
    };
    if tag_bytes.len().is_multiple_of(2) {
        let mut units: Vec<u16> = tag_bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        if units.last() == Some(&0) {
            units.pop();
        }
        let text: Option<String> = units
            .iter()
            .map(|&u| char::from_u32(u32::from(u)).filter(char::is_ascii_hexdigit))
            .collect();
        if let Some(hex) = text.filter(|t| t.len() == 40 || t.len() == 64) {
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| crate::hex::byte(&hex.as_bytes()[i..i + 2]))
                .collect();
            return bytes.and_then(|b| raw(&b));
        }
    }
    raw(tag_bytes)
}

fn signer_info(tlv: &Tlv<'_>) -> Result<SignerInfo, CatalogError> {
    let mut r = expect_seq(tlv, "SignerInfo")?;
    let version = der::small_uint(r.expect(tag::INTEGER)?.content, "SignerInfo.version")?;
    if version != 1 {
        return Err(CatalogError::BadDer {
            what: "SignerInfo.version",
            reason: "only IssuerAndSerialNumber (version 1) signers",
        });
    }
    let mut ias = r.nested(tag::SEQUENCE, "IssuerAndSerialNumber")?;
    let issuer = ias.expect(tag::SEQUENCE)?.raw.to_vec();
    let serial = ias.expect(tag::INTEGER)?.content.to_vec();
    ias.finish()?;
    let digest_algorithm =
        DigestAlgorithm::from_oid(algorithm(&mut r, "SignerInfo.digestAlgorithm")?)?;
    let signed_attributes = match r.optional(tag::context(0))? {
        Some(attrs) => Some(signed_attributes(attrs.content)?),
        None => None,
    };
    let signature_algorithm = algorithm(&mut r, "SignerInfo.digestEncryptionAlgorithm")?.to_vec();
    let signature = r.expect(tag::OCTET_STRING)?.content.to_vec();
    r.optional(tag::context(1))?; // unauthenticated attributes (timestamps): not trusted here
    r.finish()?;
    Ok(SignerInfo {
        issuer,
        serial,
        digest_algorithm,
        signed_attributes,
        signature_algorithm,
        signature,
    })
}

fn signed_attributes(content: &[u8]) -> Result<SignedAttributes, CatalogError> {
    let mut content_type = None;
    let mut message_digest = None;
    let mut signing_time = None;
    let mut r = Reader::new(content, "SignerInfo.authenticatedAttributes");
    let mut count = 0;
    while !r.is_empty() {
        count += 1;
        if count > MAX_ATTRIBUTES {
            return Err(CatalogError::TooMany {
                what: "signed attributes",
                cap: MAX_ATTRIBUTES,
            });
        }
        let (kind, values) = attribute(&r.any()?)?;
        let one = |what| match values.as_slice() {
            [v] => Ok(*v),
            _ => Err(CatalogError::Duplicate(what)),
        };
        match kind {
            oid::CONTENT_TYPE => {
                let v = one("contentType value")?;
                if v.tag != tag::OID || content_type.replace(v.content.to_vec()).is_some() {
                    return Err(CatalogError::Duplicate("contentType"));
                }
            }
            oid::MESSAGE_DIGEST => {
                let v = one("messageDigest value")?;
                if v.tag != tag::OCTET_STRING
                    || message_digest.replace(v.content.to_vec()).is_some()
                {
                    return Err(CatalogError::Duplicate("messageDigest"));
                }
            }
            oid::SIGNING_TIME => {
                let v = one("signingTime value")?;
                if signing_time
                    .replace(der::time(&v, "signingTime")?)
                    .is_some()
                {
                    return Err(CatalogError::Duplicate("signingTime"));
                }
            }
            _ => {} // SpcSpOpusInfo, SpcStatementType, ...: covered by the signature, not read
        }
    }
    Ok(SignedAttributes {
        der: der::tlv(tag::SET, content),
        content_type,
        message_digest,
        signing_time,
    })
}
