//! Talking to HAProxy: its master CLI, its runtime API, and the runtime commands planned
//! from a config file.

pub mod master;
pub mod plan;
pub mod runtime;
