//! Tests of the deploy transaction that go through [`apply_config`](super::apply_config) on a
//! simulated edge, one file per path.

mod drift;
mod reload;
mod runtime;
