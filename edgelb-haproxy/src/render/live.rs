//! Reading slot assignments back from a live config file.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::context::SPARE_ADDRESS;
use super::slots::SlotView;

/// The slots of every backend in `config` (a file this renderer wrote), by backend name.
/// Lines it does not recognise are ignored; a backend whose server lines are not the
/// contiguous `s001…` slots is left out (it will be placed afresh).
pub(crate) fn live_slots(config: &str) -> BTreeMap<String, Vec<SlotView>> {
    let mut out: BTreeMap<String, Vec<SlotView>> = BTreeMap::new();
    let mut broken: Vec<String> = Vec::new();
    let mut backend: Option<String> = None;
    for line in config.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["backend", name, ..] => backend = Some((*name).to_owned()),
            [section, ..]
                if !line.starts_with(char::is_whitespace) && !section.starts_with('#') =>
            {
                backend = None;
            }
            ["server", name, addr, rest @ ..] => {
                let Some(be) = &backend else { continue };
                let slots = out.entry(be.clone()).or_default();
                let index = name
                    .strip_prefix('s')
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| n.checked_sub(1));
                let Ok(parsed) = addr.parse::<SocketAddr>() else {
                    broken.push(be.clone());
                    continue;
                };
                if index != Some(slots.len()) {
                    broken.push(be.clone());
                    continue;
                }
                slots.push(if *addr == SPARE_ADDRESS {
                    SlotView::Spare
                } else if rest.contains(&"disabled") {
                    SlotView::Leaving(parsed)
                } else {
                    SlotView::Endpoint(parsed)
                });
            }
            _ => {}
        }
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
