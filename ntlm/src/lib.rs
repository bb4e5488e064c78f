//! Sans-IO NTLM: being written (see the NTLM issue notes).
