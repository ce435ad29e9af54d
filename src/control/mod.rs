//! The control API (`--control`): Toxiproxy's HTTP API on its own thread, so that its client
//! libraries add and remove proxies and toxics while tcpspy runs.
//!
//! - [`addr`]: proxies' listen and upstream addresses, as Toxiproxy's JSON gives them;
//! - [`api`]: the routes, the proxies and their toxics, Toxiproxy's JSON shapes and codes;
//! - [`server`]: the HTTP loop (httparse) and the backend that binds listeners;
//! - [`command`]: the queue to the reactor, which applies each change and answers.

pub mod addr;
pub mod api;
pub mod command;
pub mod server;

use std::net::TcpListener;

use anyhow::{Context, Result};

use api::{Api, Proxy};
use command::Queue;

/// Starts the API thread on `listener`, knowing the proxies the run started with.
pub fn start(listener: TcpListener, proxies: Vec<Proxy>, queue: Queue) -> Result<()> {
    let mut api = Api::default();
    for p in proxies {
        api.register(p);
    }
    std::thread::Builder::new()
        .name("tcpspy-control".into())
        .spawn(move || server::serve(listener, api, server::Relay { queue }))
        .context("cannot start the control API's thread")?;
    Ok(())
}
