//! Talking to HAProxy: its master CLI, its runtime API, and the runtime commands planned
//! from a config file.

pub(crate) mod master;
pub(crate) mod plan;
pub(crate) mod runtime;
