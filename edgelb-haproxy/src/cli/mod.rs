//! Talking to HAProxy: its master CLI, its runtime API, and the runtime commands planned
//! from a config file (`plan.rs` for servers, `acl.rs` for the source ranges of frontends), and the answer to
//! `show servers state` (`servers_state.rs`).

pub(crate) mod acl;
pub(crate) mod master;
pub(crate) mod plan;
pub(crate) mod runtime;
pub(crate) mod servers_state;
