//! The acceptor against handshakes built by hand: each rejection reason, the MIC rules and
//! the identity as the user file spells it.

use super::*;
use crate::{Client, Credentials};

const CHALLENGE: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
const NOW: u64 = 133_000_000_000_000_000;

fn users() -> Arc<UserDb> {
    let mut db = UserDb::default();
    db.insert(Some("CORP"), "alice", "secret");
    Arc::new(db)
}

fn acceptor() -> Acceptor {
    Acceptor::new(users(), CHALLENGE, NOW, "CORP")
}

/// curl's Type 1: OEM only, no UNICODE, no version.
fn curl_negotiate() -> Vec<u8> {
    let mut b = Builder::new(1);
    b.u32(0x0000_0002 | flags::REQUEST_TARGET | flags::NTLM | flags::ALWAYS_SIGN);
    b.field(&[]);
    b.field(&[]);
    b.finish().unwrap_or_default()
}

/// A Type 3 the way clients other than ours build one: optional MIC, optional KEY_EXCH.
struct Craft<'a> {
    user: &'a str,
    domain: &'a str,
    password: &'a str,
    nt_response: Option<Vec<u8>>,
    with_mic: bool,
    key_exch: Option<[u8; 16]>,
}

impl Craft<'_> {
    fn new() -> Self {
        Craft {
            user: "alice",
            domain: "CORP",
            password: "secret",
            nt_response: None,
            with_mic: false,
            key_exch: None,
        }
    }

    fn build(&self, negotiate: &[u8], challenge: &[u8]) -> Vec<u8> {
        let parsed = message::parse_challenge(challenge).unwrap_or_else(|e| panic!("{e}"));
        let mut pairs = message::parse_av_pairs(parsed.target_info).unwrap_or_default();
        let mic_flag = av::FLAG_MIC_PRESENT.to_le_bytes();
        if self.with_mic {
            pairs.push(AvPair {
                id: av::FLAGS,
                value: &mic_flag,
            });
        }
        let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
        blob.extend_from_slice(&NOW.to_le_bytes());
        blob.extend_from_slice(&[0xaa; 8]);
        blob.extend_from_slice(&[0; 4]);
        blob.extend_from_slice(&message::encode_av_pairs(&pairs).unwrap_or_default());
        blob.extend_from_slice(&[0; 4]);
        let ntowf = crypto::ntowfv2(self.password, self.user, self.domain);
        let proof = crypto::nt_proof(&ntowf, &parsed.server_challenge, &blob);
        let nt = self.nt_response.clone().unwrap_or_else(|| {
            let mut nt = proof.to_vec();
            nt.extend_from_slice(&blob);
            nt
        });
        let base = crypto::session_base_key(&ntowf, &proof);
        let (exported, encrypted, key_flag) = match self.key_exch {
            Some(k) => (k, crypto::rc4(&base, &k), flags::KEY_EXCH),
            None => (base, Vec::new(), 0),
        };
        let mut b = Builder::new(3);
        b.field(&[0; 24]);
        b.field(&nt);
        b.field(&crypto::utf16le(self.domain));
        b.field(&crypto::utf16le(self.user));
        b.field(&crypto::utf16le("WS"));
        b.field(&encrypted);
        b.u32(flags::UNICODE | flags::NTLM | key_flag);
        if self.with_mic {
            b.bytes(&message::VERSION);
            b.bytes(&[0; 16]);
        }
        let mut msg = b.finish().unwrap_or_default();
        if self.with_mic {
            let mic = crypto::mic(&exported, negotiate, challenge, &msg);
            msg[message::MIC_OFFSET..message::AUTH_HEADER_WITH_MIC].copy_from_slice(&mic);
        }
        msg
    }
}

fn run(craft: &Craft<'_>) -> AcceptStep {
    let mut acc = acceptor();
    let negotiate = curl_negotiate();
    let AcceptStep::Challenge(challenge) = acc.step(&negotiate) else {
        panic!("no challenge for a curl-style Type 1");
    };
    acc.step(&craft.build(&negotiate, &challenge))
}

fn accepted() -> AcceptStep {
    AcceptStep::Accepted {
        domain: "CORP".into(),
        user: "alice".into(),
    }
}

#[test]
fn type2_is_unicode_with_our_challenge_and_timestamp_even_for_an_oem_type1() {
    let AcceptStep::Challenge(t2) = acceptor().step(&curl_negotiate()) else {
        panic!("expected a challenge");
    };
    let parsed = message::parse_challenge(&t2).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(parsed.flags & flags::UNICODE, 0);
    assert_ne!(parsed.flags & flags::TARGET_INFO, 0);
    assert_eq!(parsed.server_challenge, CHALLENGE);
    let pairs = message::parse_av_pairs(parsed.target_info).unwrap_or_default();
    let ts = pairs
        .iter()
        .find(|p| p.id == av::TIMESTAMP)
        .map(|p| p.value);
    assert_eq!(ts, Some(&NOW.to_le_bytes()[..]));
    let nb = pairs
        .iter()
        .find(|p| p.id == av::NB_DOMAIN_NAME)
        .map(|p| p.value);
    assert_eq!(nb, Some(&crypto::utf16le("CORP")[..]));
}

#[test]
fn a_client_without_mic_is_accepted_only_with_the_right_password() {
    // sspi's hole (Devolutions/sspi-rs#172): no MIC meant any password passed.
    assert_eq!(run(&Craft::new()), accepted());
    let wrong = Craft {
        password: "WRONG",
        ..Craft::new()
    };
    assert_eq!(run(&wrong), AcceptStep::Rejected(RejectReason::BadProof));
}

#[test]
fn a_key_exchange_client_mic_is_checked_with_the_decrypted_session_key() {
    let good = Craft {
        with_mic: true,
        key_exch: Some([0x55; 16]),
        ..Craft::new()
    };
    assert_eq!(run(&good), accepted());
}

#[test]
fn a_forged_mic_is_rejected() {
    let mut acc = acceptor();
    let negotiate = curl_negotiate();
    let AcceptStep::Challenge(challenge) = acc.step(&negotiate) else {
        panic!("expected a challenge");
    };
    let craft = Craft {
        with_mic: true,
        ..Craft::new()
    };
    let mut t3 = craft.build(&negotiate, &challenge);
    t3[message::MIC_OFFSET] ^= 1;
    assert_eq!(
        acc.step(&t3),
        AcceptStep::Rejected(RejectReason::MicMismatch)
    );
}

#[test]
fn mic_flag_without_room_for_a_mic_is_rejected() {
    // The blob says "MIC present" but the header is the short, MIC-less layout.
    let mut acc = acceptor();
    let negotiate = curl_negotiate();
    let AcceptStep::Challenge(challenge) = acc.step(&negotiate) else {
        panic!("expected a challenge");
    };
    let with_flag = Craft {
        with_mic: true,
        ..Craft::new()
    }
    .build(&negotiate, &challenge);
    let nt = message::parse_authenticate(&with_flag)
        .map(|a| a.nt_response.to_vec())
        .unwrap_or_default();
    let short = Craft {
        nt_response: Some(nt),
        ..Craft::new()
    }
    .build(&negotiate, &challenge);
    assert_eq!(
        acc.step(&short),
        AcceptStep::Rejected(RejectReason::MicMismatch)
    );
}

#[test]
fn ntlmv1_and_lm_only_responses_are_refused() {
    for nt in [vec![0x11; 24], Vec::new()] {
        let craft = Craft {
            nt_response: Some(nt),
            ..Craft::new()
        };
        assert_eq!(run(&craft), AcceptStep::Rejected(RejectReason::NtlmV1));
    }
}

#[test]
fn anonymous_type3_is_refused() {
    let craft = Craft {
        user: "",
        domain: "",
        password: "",
        ..Craft::new()
    };
    assert_eq!(run(&craft), AcceptStep::Rejected(RejectReason::Anonymous));
}

/// A Type 3 naming `domain` whose proof was computed over `proof_domain`.
fn mixed(domain: &str, proof_domain: &str) -> AcceptStep {
    let mut acc = acceptor();
    let negotiate = curl_negotiate();
    let AcceptStep::Challenge(challenge) = acc.step(&negotiate) else {
        panic!("expected a challenge");
    };
    let proved = Craft {
        domain: proof_domain,
        ..Craft::new()
    }
    .build(&negotiate, &challenge);
    let nt = message::parse_authenticate(&proved)
        .map(|a| a.nt_response.to_vec())
        .unwrap_or_default();
    let sent = Craft {
        domain,
        nt_response: Some(nt),
        ..Craft::new()
    };
    acc.step(&sent.build(&negotiate, &challenge))
}

#[test]
fn the_account_domain_and_the_empty_domain_are_tried_for_the_named_user_only() {
    // Proof over the account's domain while the client named none (or the lower-case
    // spelling), and over the empty domain while it named the account's.
    assert_eq!(mixed("", "CORP"), accepted());
    assert_eq!(mixed("corp", "CORP"), accepted());
    assert_eq!(mixed("CORP", ""), accepted());

    // Another user's password never proves "alice".
    let negotiate = curl_negotiate();
    let mut db = UserDb::default();
    db.insert(Some("CORP"), "alice", "secret");
    db.insert(Some("CORP"), "mallory", "mallory-pw");
    let mut acc = Acceptor::new(Arc::new(db), CHALLENGE, NOW, "CORP");
    let AcceptStep::Challenge(challenge) = acc.step(&negotiate) else {
        panic!("expected a challenge");
    };
    let craft = Craft {
        password: "mallory-pw",
        ..Craft::new()
    };
    assert_eq!(
        acc.step(&craft.build(&negotiate, &challenge)),
        AcceptStep::Rejected(RejectReason::BadProof)
    );
}

#[test]
fn a_upn_user_name_finds_the_local_account_and_reports_it_as_the_file_does() {
    let craft = Craft {
        user: "alice@corp.example",
        domain: "",
        ..Craft::new()
    };
    assert_eq!(run(&craft), accepted());
}

#[test]
fn the_identity_is_the_accounts_spelling_not_the_clients() {
    let shouted = Craft {
        user: "ALICE",
        domain: "corp",
        ..Craft::new()
    };
    assert_eq!(run(&shouted), accepted());
}

#[test]
fn a_domain_the_account_does_not_belong_to_is_refused_even_with_the_password() {
    // Both were accepted and logged as `EVILDOM\ALICE` / `attacker.example\alice`.
    for (user, domain) in [
        ("ALICE", "EVILDOM"),
        ("alice", "attacker.example"),
        ("alice@attacker.example", ""),
        ("alice@corp.example", "EVILDOM"),
    ] {
        let craft = Craft {
            user,
            domain,
            ..Craft::new()
        };
        assert_eq!(
            run(&craft),
            AcceptStep::Rejected(RejectReason::ForeignDomain),
            "{domain}\\{user}"
        );
    }
    // With a wrong password the proof fails first: the domain says nothing then.
    let wrong = Craft {
        domain: "EVILDOM",
        password: "WRONG",
        ..Craft::new()
    };
    assert_eq!(run(&wrong), AcceptStep::Rejected(RejectReason::BadProof));
}

#[test]
fn an_unknown_user_costs_the_same_hashing_as_a_wrong_password() {
    let hashed = |craft: &Craft<'_>| {
        let mut acc = acceptor();
        let negotiate = curl_negotiate();
        let AcceptStep::Challenge(challenge) = acc.step(&negotiate) else {
            panic!("expected a challenge");
        };
        let t3 = craft.build(&negotiate, &challenge);
        let before = crypto::ntowfv2_calls();
        let step = acc.step(&t3);
        (step, crypto::ntowfv2_calls() - before)
    };
    let (wrong, wrong_cost) = hashed(&Craft {
        password: "WRONG",
        ..Craft::new()
    });
    let (unknown, unknown_cost) = hashed(&Craft {
        user: "mallory",
        ..Craft::new()
    });
    let (right, right_cost) = hashed(&Craft::new());
    assert_eq!(wrong, AcceptStep::Rejected(RejectReason::BadProof));
    assert_eq!(unknown, AcceptStep::Rejected(RejectReason::UnknownUser));
    assert_eq!(right, accepted());
    assert_eq!(unknown_cost, wrong_cost);
    assert_eq!(
        right_cost, wrong_cost,
        "a match must not end the loop early"
    );
    assert_eq!(wrong_cost, 3);
}

#[test]
fn our_client_is_accepted_and_a_tampered_type1_breaks_its_mic() {
    let mut client = Client::new(Credentials::parse_user("CORP\\alice", "secret"), "PHONE");
    let negotiate = client.negotiate();
    let mut altered = negotiate.clone();
    // A man in the middle strips UNICODE from the Type 1 (a downgrade attempt).
    altered[12] &= !(flags::UNICODE as u8);
    let mut acc = acceptor();
    let AcceptStep::Challenge(challenge) = acc.step(&altered) else {
        panic!("expected a challenge");
    };
    let t3 = client
        .authenticate(&challenge, [7; 8], 0)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        acc.step(&t3),
        AcceptStep::Rejected(RejectReason::MicMismatch)
    );
}

#[test]
fn reject_reasons_display_without_debug_noise() {
    assert_eq!(
        RejectReason::BadProof.to_string(),
        "bad NTLMv2 proof (wrong password)"
    );
    assert_eq!(
        RejectReason::Malformed.to_string(),
        "malformed NTLM message"
    );
}
