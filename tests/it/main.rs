//! The integration tests: one binary that runs the real tcpspy (CARGO_BIN_EXE_tcpspy) on
//! loopback, and drives its connection state machine in a socket-free simulation.

mod relay;
mod sim;
mod startup;
mod util;
