//! The crate's error type.

/// Everything that can fail in `edgelb-kube`.
///
/// Messages say what failed, on which object, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Kubernetes client could be built (no in-cluster ServiceAccount, no kubeconfig).
    #[error(
        "connecting to the Kubernetes API failed: {source}; run edgelb inside the cluster with its ServiceAccount (deploy/), or point KUBECONFIG at a kubeconfig"
    )]
    Connect {
        /// The client error.
        #[source]
        source: kube::Error,
    },

    /// A call to the Kubernetes API failed.
    #[error("{action} {object} failed: {source}{hint}", hint = hint(source))]
    Api {
        /// What was being done ("patching the status of", "renewing", ...).
        action: &'static str,
        /// The object, e.g. `Service kube-system/traefik`.
        object: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },

    /// A setting is not usable.
    #[error("invalid {setting}: {reason}")]
    Config {
        /// Which setting.
        setting: &'static str,
        /// Why, and what is allowed.
        reason: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn api(
        action: &'static str,
        object: impl Into<String>,
        source: kube::Error,
    ) -> Self {
        Self::Api {
            action,
            object: object.into(),
            source,
        }
    }

    pub(crate) fn config(setting: &'static str, reason: impl Into<String>) -> Self {
        Self::Config {
            setting,
            reason: reason.into(),
        }
    }
}

/// The HTTP status code of an API error, if the server answered.
pub(crate) fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// A hint for the operator, appended to API error messages.
pub(crate) fn hint(err: &kube::Error) -> &'static str {
    match status_code(err) {
        Some(401) => {
            "; the API server rejected edgelb's credentials: check the ServiceAccount token"
        }
        Some(403) => {
            "; edgelb's ServiceAccount lacks a permission: apply the ClusterRole and Role in deploy/rbac.yaml"
        }
        Some(404) => "; the object (or its namespace) does not exist",
        Some(409) => "; another writer changed the object first (edgelb retries)",
        Some(410) => "; the watch expired (edgelb relists)",
        Some(400 | 422) => {
            "; the API server rejected the object as invalid (the message names the field): an admission policy or webhook may forbid it, otherwise report it as an edgelb bug"
        }
        Some(429) => "; the API server is throttling edgelb (edgelb retries)",
        Some(code) if code >= 500 => "; the API server had a problem (edgelb retries)",
        Some(_) => "",
        None => match err {
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
                "; check that the API server is reachable from edgelb"
            }
            kube::Error::Auth(_) => {
                "; check edgelb's credentials (ServiceAccount token or kubeconfig)"
            }
            _ => "",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            Status::failure("Event.events.k8s.io \"x\" is invalid", "Invalid")
                .with_code(code)
                .boxed(),
        )
    }

    /// Issue 19 item 5: a rejected object is not blamed on the network.
    #[test]
    fn a_rejected_object_is_not_called_unreachable() {
        let h = hint(&api_error(422));
        assert!(h.contains("rejected the object as invalid"), "{h}");
        assert!(!h.contains("reachable"), "{h}");
        assert!(hint(&api_error(503)).contains("retries"));
        assert_eq!(hint(&api_error(418)), "");
    }
}
