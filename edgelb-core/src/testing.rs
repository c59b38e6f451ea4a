//! Test doubles for embedders' tests (feature `testing`): mockall mocks of the traits, for
//! checking single calls, and [`FakeDeployer`], a stateful deployer that remembers what each
//! node runs, so retries, backoff, resync and drift repair can be tested as edgelb's own
//! pipeline tests do.

mod fake_deployer;

pub use crate::traits::{MockDeployer, MockHealthProbe, MockRenderer};
pub use fake_deployer::{DeployCall, FakeDeployer, Refusal};
