//! `spec.sessionAffinity: ClientIP`: a client's connections go to one endpoint, for
//! `spec.sessionAffinityConfig.clientIP.timeoutSeconds` (default 10800, at most 86400) after
//! its last connection.

use edgelb_core::SessionAffinity;
use k8s_openapi::api::core::v1::Service;

use crate::convert::Warning;

/// The Service's session affinity: `None` for `None` (or unset). An unknown mode or a timeout
/// Kubernetes would not accept is a Warning; the Service is then served without affinity,
/// resp. with the default timeout.
pub(crate) fn session_affinity(
    svc: &Service,
    warnings: &mut Vec<Warning>,
) -> Option<SessionAffinity> {
    let spec = svc.spec.as_ref()?;
    match spec.session_affinity.as_deref() {
        None | Some("None") | Some("") => None,
        Some("ClientIP") => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            let Some(seconds) = timeout else {
                return Some(SessionAffinity::default());
            };
            match u32::try_from(seconds)
                .ok()
                .and_then(|s| SessionAffinity::client_ip(s).ok())
            {
                Some(affinity) => Some(affinity),
                None => {
                    warnings.push(Warning::about(
                        svc,
                        "InvalidSessionAffinity",
                        format!(
                            "sessionAffinityConfig.clientIP.timeoutSeconds is {seconds}; Kubernetes allows 1 to {}, so edgelb uses its default {}",
                            SessionAffinity::MAX_TIMEOUT_SECONDS,
                            SessionAffinity::DEFAULT_TIMEOUT_SECONDS
                        ),
                    ));
                    Some(SessionAffinity::default())
                }
            }
        }
        Some(other) => {
            warnings.push(Warning::about(
                svc,
                "InvalidSessionAffinity",
                format!(
                    "sessionAffinity {} is neither None nor ClientIP; the Service is served without affinity",
                    edgelb_core::text::quoted(other)
                ),
            ));
            None
        }
    }
}
