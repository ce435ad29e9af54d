//! The integration tests: one binary that runs the real tcpspy (CARGO_BIN_EXE_tcpspy) on
//! loopback.

mod limits;
mod live;
mod pcap;
mod relay;
mod startup;
mod util;
