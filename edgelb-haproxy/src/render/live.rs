//! Reading slot assignments back from a live config file, through the deploy's reader of it
//! ([`LiveFile`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::context::SPARE_ADDRESS;
use super::slots::SlotView;
use crate::live_file::LiveFile;

/// The slots of every backend in `config` (a file this renderer wrote), by backend name.
/// Lines it does not recognise are ignored; a backend whose server lines are not the
/// contiguous `s001…` slots is left out (it will be placed afresh).
pub(crate) fn live_slots(config: &str) -> BTreeMap<String, Vec<SlotView>> {
    let file = LiveFile::parse(config.as_bytes());
    let spare = SPARE_ADDRESS.parse::<SocketAddr>().ok();
    let mut out: BTreeMap<String, Vec<SlotView>> = BTreeMap::new();
    let mut broken = file.odd_backends;
    for slot in file.servers {
        if broken.contains(&*slot.backend) {
            continue;
        }
        let slots = out.entry(slot.backend.to_string()).or_default();
        let index = slot
            .server
            .strip_prefix('s')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1));
        if index != Some(slots.len()) {
            broken.insert(slot.backend.to_string());
            continue;
        }
        slots.push(if Some(slot.addr) == spare {
            SlotView::Spare
        } else if slot.maint {
            SlotView::Leaving(slot.addr)
        } else {
            SlotView::Endpoint(slot.addr)
        });
    }
    for be in broken {
        out.remove(&be);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_endpoints_leaving_and_spare_slots_per_backend() {
        let cfg = "# edgelb-digest: sha256:00\nglobal\n    master-worker\n\nbackend be_a_b_http\n    balance roundrobin\n    server s001 10.0.0.2:80 check send-proxy-v2\n    server s002 10.0.0.9:80 check disabled\n    server s003 [fd00::1]:80 check weight 0\n    server s004 127.0.0.1:1 check disabled\n\nfrontend fe_80\n    bind :80\n";
        let slots = live_slots(cfg);
        assert_eq!(
            slots["be_a_b_http"],
            vec![
                SlotView::Endpoint("10.0.0.2:80".parse().unwrap()),
                SlotView::Leaving("10.0.0.9:80".parse().unwrap()),
                SlotView::Endpoint("[fd00::1]:80".parse().unwrap()),
                SlotView::Spare,
            ]
        );
        assert_eq!(slots.len(), 1);
    }

    #[test]
    fn a_hand_made_backend_is_left_out() {
        let cfg = "backend x\n    server web1 10.0.0.1:80\n";
        assert!(live_slots(cfg).is_empty());
    }
}
