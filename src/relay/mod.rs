//! A relayed connection, without sockets: the state machine ([`conn`]), one pipeline per
//! direction ([`pipeline`]: source, record, stages, sink), the stages' interface and the
//! record's ([`stage`]), and what it needs of the streams it relays between ([`stream`]).
//! Everything here is generic over the stream and takes its time from the [`stage::Tap`], so
//! unit tests and the simulation drive the same code the reactor does.

pub mod conn;
pub mod pipeline;
pub mod stage;
pub mod stream;

pub use conn::{Conn, Phase, Scripted, Status};
pub use pipeline::{Fault, Peer, Pipeline};
pub use stage::{Release, Stage, Tap};
pub use stream::{Due, Socket, Stream};
