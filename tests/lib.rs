//! Integration and conformance tests that span crates; see the tests/ folder.
