//! [`Client`]: the device side of one NTLMv2 handshake (Type 1 out, Type 2 in, Type 3 out).

use crate::{Credentials, NtlmError};

/// One NTLM handshake on one connection, from the device's side.
#[derive(Debug)]
pub struct Client {
    credentials: Credentials,
    workstation: String,
    negotiate: Option<Vec<u8>>,
}

impl Client {
    /// A client for `credentials`, naming itself `workstation` in its messages.
    pub fn new(credentials: Credentials, workstation: &str) -> Client {
        Client {
            credentials,
            workstation: workstation.to_string(),
            negotiate: None,
        }
    }

    /// The Type 1 (negotiate) message.
    pub fn negotiate(&mut self) -> Vec<u8> {
        let _ = (&self.credentials, &self.workstation);
        let msg = Vec::new();
        self.negotiate = Some(msg.clone());
        msg
    }

    /// Type 3 from the server's Type 2. `client_challenge` is 8 random bytes, `now_filetime` the
    /// time as a Windows FILETIME used when the Type 2 target info has no MsvAvTimestamp.
    pub fn authenticate(
        &mut self,
        challenge: &[u8],
        client_challenge: [u8; 8],
        now_filetime: u64,
    ) -> Result<Vec<u8>, NtlmError> {
        let _ = (challenge, client_challenge, now_filetime);
        Err(NtlmError::Unsupported("not written yet"))
    }
}
