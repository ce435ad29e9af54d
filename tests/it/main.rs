//! The integration tests: one binary that runs the real tcpspy (CARGO_BIN_EXE_tcpspy) on
//! loopback.

mod bench;
mod forwards;
mod limits;
mod pcap;
mod relay;
mod startup;
mod story;
mod util;
