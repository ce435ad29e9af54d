//! The control API: Toxiproxy's HTTP API on its own thread (`--control`), and what it shares
//! with the command line.
//!
//! - [`addr`]: proxies' listen and upstream addresses, as Toxiproxy's JSON gives them.

pub mod addr;
