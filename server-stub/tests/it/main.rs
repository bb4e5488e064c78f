//! Integration tests of the server stub, one test binary with a module per area. What a
//! request does is tested in memory through `App::call` (`common::app`, `Conn::Mem`); real
//! loopback sockets (plain TCP and rustls) only where the connection is the subject: caps,
//! timeouts, NTLM bound to a TCP connection, TLS, the CLI, restarts and power cuts. Every
//! hostile input is in `hostile`.

mod common;

mod audit;
mod catalog;
mod cli;
mod cmdlets;
mod connections;
mod external;
mod files;
mod growth;
mod hostile;
mod hostile_sockets;
mod import;
mod logs;
mod metrics;
mod permissions;
mod persistence;
mod roundtable;
mod rules;
mod shared_host;
