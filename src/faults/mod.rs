//! Faults on demand: Toxiproxy's toxics (and `corrupt`), set from the command line
//! (`--fault`), a populate file (`--faults`) or the control API, each acting on a rule's
//! connections as a relay [`Stage`](crate::relay::Stage), and recorded.
//!
//! - [`spec`]: what a toxic is as the user gives it, and its parsers (flag, JSON, populate);
//! - [`toxic`]: the [`Behaviour`](toxic::Behaviour) every toxic implements, pure and driven
//!   by an injected clock; one module per family: [`latency`], [`pace`] (bandwidth, slicer),
//!   [`ends`] (slow_close, timeout, reset_peer, limit_data), [`corrupt`];
//! - [`stage`]: the relay stage that runs a rule's live toxics on one direction of a
//!   connection: toxicity, content triggers (`match`, `after_bytes`), story lines;
//! - [`rng`]: the seeded random numbers that make a run repeat.
//!
//! A rule's toxics are a [`Live`] set shared by its connections: changing it (the API) is seen
//! by the connections already open at their next turn, as Toxiproxy's toxics are live on
//! existing links. A rule with no toxic gives its connections no stage, so they relay as if
//! faults did not exist (splice included).

pub mod corrupt;
pub mod ends;
pub mod latency;
pub mod pace;
pub mod rng;
pub mod spec;
pub mod stage;
pub mod toxic;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

pub use spec::{Kind, Stream, Toxic, Trigger};

/// A rule's toxics, shared by the rule's connections and changed in place (by the reactor,
/// applying what the control API asked).
#[derive(Debug, Default)]
pub struct Live {
    generation: AtomicU64,
    toxics: Mutex<Arc<Vec<Toxic>>>,
}

impl Live {
    pub fn new(toxics: Vec<Toxic>) -> Arc<Live> {
        Arc::new(Live {
            generation: AtomicU64::new(0),
            toxics: Mutex::new(Arc::new(toxics)),
        })
    }

    /// A number that changes whenever the toxics do.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The toxics now, in order.
    pub fn get(&self) -> Arc<Vec<Toxic>> {
        self.toxics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the toxics.
    pub fn set(&self, toxics: Vec<Toxic>) {
        *self.toxics.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(toxics);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// True if some toxic acts on direction `dir` (0: client to server).
    pub fn covers(&self, dir: usize) -> bool {
        self.get().iter().any(|t| t.stream.covers(dir))
    }
}

/// The faults a run starts with, as the command line and the `--faults` file give them.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Per rule, in rule order: the proxy's name (for `proxy=` and the API) and its toxics.
    pub rules: Vec<RulePlan>,
    /// The random numbers' seed (`--seed`).
    pub seed: u64,
    /// Where the control API listens (`--control`).
    pub control: Option<std::net::SocketAddr>,
    /// Proxies of the file that start disabled: only the API can enable them.
    pub disabled: Vec<spec::ProxySpec>,
}

/// One rule's name and toxics.
#[derive(Clone, Debug, Default)]
pub struct RulePlan {
    pub name: String,
    /// The upstream as the proxy's JSON shows it (`host:port`, as given).
    pub upstream: String,
    pub toxics: Vec<Toxic>,
}

impl Plan {
    /// True if anything about faults was asked for.
    pub fn is_on(&self) -> bool {
        self.control.is_some() || self.rules.iter().any(|r| !r.toxics.is_empty())
    }
}
