//! Integration tests of the server stub over real loopback sockets (plain TCP and rustls),
//! one test binary with a module per area.

mod common;

mod bad_input;
mod catalog;
mod cli;
mod connections;
mod external;
mod files;
mod logs;
mod persistence;
mod rules;
