//! The integration tests: one binary that runs the real tcpspy (CARGO_BIN_EXE_tcpspy) on
//! loopback, drives its connection state machine in a socket-free simulation, and property-tests
//! its parsers.

mod backpressure;
mod bench;
mod budget;
mod control;
mod faults;
mod forwards;
mod hostile;
mod limits;
mod live;
mod logger;
mod memory;
mod parsers;
mod pcap;
mod proxy;
mod proxy_props;
mod relay;
mod replay;
mod sim;
mod startup;
mod story;
mod tls;
mod tools;
mod util;
