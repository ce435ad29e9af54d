//! `tcpspy replay` and `tcpspy mock`: a recording played again (issue 14).
//!
//! - [`recording`]: a conversation as ordered acts of its two sides (chunks, FIN, reset),
//!   with their times;
//! - [`source`]: the readers, one per format tcpspy writes (hex dumps, gotcpspy's too;
//!   captures; binary logs) and the log directory's index;
//! - [`script`]: one side played turn by turn, time given, no sockets;
//! - [`peer`]: that player as a scripted peer in the reactor ([`crate::reactor::transport`]),
//!   so a replay or a mock is relayed and logged like any connection;
//! - [`compare`]: the server's answer against the recorded one, `--ignore` masks applied;
//! - [`mock`]: which recording a client gets, and where it departs from it;
//! - [`args`] and [`run`]: the two commands' flags, and their runs (the only I/O here besides
//!   the readers' file reads).

pub mod args;
pub mod compare;
pub mod mock;
pub mod peer;
pub mod recording;
pub mod run;
pub mod script;
pub mod source;
