//! NTLMv2 cryptography (MS-NLMP 3.3.2): NTOWFv2, NTProofStr, the session base key and the
//! MIC, all HMAC-MD5 over an MD4 password hash.
