//! The inputs and typed outcomes the rejected-config and failed-reload scenarios share,
//! whether the host is a testbed edge or the local host.

use edgelb_core::{DeployError, RenderedConfig};

/// `good` with a backend HAProxy's parser rejects (an unknown keyword) appended.
pub(crate) fn with_unknown_keyword(good: &RenderedConfig) -> RenderedConfig {
    let body = good.text.split_once('\n').expect("digest line").1;
    RenderedConfig::from_body(format!(
        "{body}\nbackend be_broken\n    frobnicate-the-widgets on\n"
    ))
}

/// Checks that `err` is the outcome of [`with_unknown_keyword`]'s config on `node`: rejected
/// by `haproxy -c`, with HAProxy's message, and saying nothing was changed.
pub(crate) fn assert_config_rejected(err: &DeployError, node_name: &str) {
    let DeployError::ConfigRejected {
        node,
        haproxy_output,
    } = err
    else {
        panic!("expected ConfigRejected, got {err:?}");
    };
    assert_eq!(node, node_name);
    assert!(
        haproxy_output.contains("frobnicate-the-widgets") && haproxy_output.contains("ALERT"),
        "HAProxy's message should be in the outcome: {haproxy_output}"
    );
    assert!(err.to_string().contains("nothing was changed"), "{err}");
}

/// Checks that `err` is a failed reload on `node` whose previous config was restored.
pub(crate) fn assert_reload_rolled_back(err: &DeployError, node_name: &str) {
    let DeployError::ReloadFailed {
        node, rolled_back, ..
    } = err
    else {
        panic!("expected ReloadFailed, got {err:?}");
    };
    assert_eq!(node, node_name);
    assert!(rolled_back, "{err}");
    assert!(
        err.to_string().contains("previous config was restored"),
        "{err}"
    );
}
