//! Stable server slots: which endpoint sits in which `server sNNN` line of a backend.
//!
//! HAProxy's runtime API can point an existing server at a new address and enable or disable
//! it, but a reload forgets such changes. So the config file names servers by slot, and an
//! endpoint keeps its slot for as long as it exists: an endpoint-only change then touches a
//! few slots, which the runtime API can apply without a reload while the file says the same.
//!
//! Rules, per backend:
//! * an endpoint that is still there keeps its slot;
//! * a removed endpoint frees its slot; if it comes back while that slot is still free, it
//!   gets the same slot again (a pod flapping between ready and not ready);
//! * any other new endpoint takes the lowest free slot, new endpoints in address order;
//! * the slot count is a multiple of `block` with at least `min_spare` free slots; it grows
//!   when that is not met and shrinks only when more than a block would be left over, and
//!   never below the highest occupied slot.
//!
//! A fresh table assigns endpoints in address order to the first slots, so the same snapshot
//! renders byte-identically from any fresh renderer; assigning the same endpoint set twice in
//! a row changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;

use super::options::SlotOptions;

/// The slot name for a zero-based slot index: `s001`, `s002`, …, `s999`, `s1000`, …
///
/// This is the server name in `haproxy.cfg` and in runtime API commands
/// (`set server <backend>/<slot> …`).
///
/// ```
/// assert_eq!(edgelb_haproxy::slot_name(0), "s001");
/// assert_eq!(edgelb_haproxy::slot_name(999), "s1000");
/// ```
pub fn slot_name(index: usize) -> String {
    format!("s{:03}", index.saturating_add(1))
}

/// One server slot.
#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    /// The endpoint in the slot.
    occupant: Option<SocketAddr>,
    /// The last endpoint that left it, while the slot is free.
    previous: Option<SocketAddr>,
}

/// The slots of one backend.
#[derive(Debug, Default, Clone)]
pub(crate) struct SlotTable {
    /// The slots; the length is the slot count.
    slots: Vec<Slot>,
    /// The slot of each occupant.
    by_addr: HashMap<SocketAddr, usize>,
    /// The slot each former occupant left, while it is still free.
    previous: HashMap<SocketAddr, usize>,
}

impl SlotTable {
    /// Updates the table for `endpoints` (all of them, in address order) and returns the
    /// occupant of every slot, in slot order.
    pub(crate) fn assign<'a>(
        &mut self,
        endpoints: impl Iterator<Item = &'a SocketAddr> + Clone,
        opts: &SlotOptions,
    ) -> Vec<Option<SocketAddr>> {
        let wanted: HashSet<SocketAddr> = endpoints.clone().copied().collect();

        // Free the slots of endpoints that are gone, remembering who sat there.
        let gone: Vec<(SocketAddr, usize)> = self
            .by_addr
            .iter()
            .filter(|(addr, _)| !wanted.contains(addr))
            .map(|(addr, slot)| (*addr, *slot))
            .collect();
        for (addr, slot) in gone {
            self.by_addr.remove(&addr);
            self.forget_previous(slot);
            self.slots[slot] = Slot {
                occupant: None,
                previous: Some(addr),
            };
            self.previous.insert(addr, slot);
        }

        // Size the table: room for every endpoint plus the spares, in whole blocks, and never
        // below the highest slot still occupied.
        let block = opts.block.max(1) as usize;
        let highest_used = self
            .slots
            .iter()
            .rposition(|s| s.occupant.is_some())
            .map_or(0, |i| i + 1);
        let needed = (wanted.len() + opts.min_spare as usize).max(highest_used);
        let needed = needed.div_ceil(block) * block;
        let current = self.slots.len();
        if needed > current || current > needed + block {
            for slot in needed..current {
                self.forget_previous(slot);
            }
            self.slots.resize(needed, Slot::default());
        }

        // Returning endpoints first take back their previous slot if it is still free, then
        // the others fill the lowest free slots, in address order.
        let mut newcomers = Vec::new();
        for addr in endpoints {
            if self.by_addr.contains_key(addr) {
                continue;
            }
            match self.previous.get(addr) {
                Some(&slot) => self.place(*addr, slot),
                None => newcomers.push(*addr),
            }
        }
        let mut free = 0;
        for addr in newcomers {
            while self.slots.get(free).is_some_and(|s| s.occupant.is_some()) {
                free += 1;
            }
            if free == self.slots.len() {
                // Cannot happen (the table was sized for every endpoint); stay correct anyway.
                self.slots.push(Slot::default());
            }
            self.place(addr, free);
        }
        self.slots.iter().map(|s| s.occupant).collect()
    }

    /// Puts `addr` in the free slot `slot`; whoever left it has lost the claim to it.
    fn place(&mut self, addr: SocketAddr, slot: usize) {
        self.forget_previous(slot);
        self.slots[slot].occupant = Some(addr);
        self.by_addr.insert(addr, slot);
    }

    fn forget_previous(&mut self, slot: usize) {
        if let Some(prev) = self.slots.get_mut(slot).and_then(|s| s.previous.take()) {
            self.previous.remove(&prev);
        }
    }
}

/// The slot tables of every backend, by backend name.
#[derive(Debug, Default)]
pub(crate) struct SlotMemory {
    tables: BTreeMap<String, SlotTable>,
}

impl SlotMemory {
    /// The table of `backend`, created empty on first use.
    pub(crate) fn table(&mut self, backend: &str) -> &mut SlotTable {
        self.tables.entry(backend.to_owned()).or_default()
    }

    /// Forgets every backend not in `keep` (services or ports that are gone).
    pub(crate) fn retain(&mut self, keep: &BTreeSet<&str>) {
        self.tables.retain(|name, _| keep.contains(name.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = list.iter().map(|s| s.parse().unwrap()).collect();
        v.sort();
        v
    }

    fn opts(min_spare: u32, block: u32) -> SlotOptions {
        SlotOptions { min_spare, block }
    }

    fn run(table: &mut SlotTable, list: &[&str], o: &SlotOptions) -> Vec<Option<String>> {
        let a = addrs(list);
        table
            .assign(a.iter(), o)
            .into_iter()
            .map(|s| s.map(|a| a.to_string()))
            .collect()
    }

    fn occupied(slots: &[Option<String>]) -> Vec<(usize, String)> {
        slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.clone().map(|a| (i, a)))
            .collect()
    }

    #[test]
    fn fresh_table_assigns_in_address_order_with_spares_in_blocks() {
        let mut t = SlotTable::default();
        let slots = run(
            &mut t,
            &["10.0.0.3:80", "10.0.0.1:80", "10.0.0.2:80"],
            &opts(4, 8),
        );
        assert_eq!(slots.len(), 8);
        assert_eq!(
            occupied(&slots),
            vec![
                (0, "10.0.0.1:80".into()),
                (1, "10.0.0.2:80".into()),
                (2, "10.0.0.3:80".into())
            ]
        );
    }

    #[test]
    fn empty_backend_still_gets_spare_slots() {
        let mut t = SlotTable::default();
        assert_eq!(run(&mut t, &[], &opts(4, 8)), vec![None; 8]);
        let mut t = SlotTable::default();
        assert!(run(&mut t, &[], &opts(0, 8)).is_empty());
    }

    #[test]
    fn removed_endpoint_frees_its_slot_and_others_stay() {
        let o = opts(4, 8);
        let mut t = SlotTable::default();
        run(&mut t, &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], &o);
        let slots = run(&mut t, &["10.0.0.1:80", "10.0.0.3:80"], &o);
        assert_eq!(
            occupied(&slots),
            vec![(0, "10.0.0.1:80".into()), (2, "10.0.0.3:80".into())]
        );
        // A new endpoint takes the lowest free slot, not the end.
        let slots = run(&mut t, &["10.0.0.1:80", "10.0.0.3:80", "10.0.0.9:80"], &o);
        assert_eq!(
            occupied(&slots),
            vec![
                (0, "10.0.0.1:80".into()),
                (1, "10.0.0.9:80".into()),
                (2, "10.0.0.3:80".into())
            ]
        );
    }

    #[test]
    fn returning_endpoint_gets_its_old_slot_back_if_free() {
        let o = opts(4, 8);
        let mut t = SlotTable::default();
        run(&mut t, &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], &o);
        run(&mut t, &["10.0.0.1:80", "10.0.0.3:80"], &o);
        // 10.0.0.0 is new and sorts first, yet 10.0.0.2 reclaims slot 1.
        let slots = run(
            &mut t,
            &["10.0.0.0:80", "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"],
            &o,
        );
        assert_eq!(
            occupied(&slots),
            vec![
                (0, "10.0.0.1:80".into()),
                (1, "10.0.0.2:80".into()),
                (2, "10.0.0.3:80".into()),
                (3, "10.0.0.0:80".into())
            ]
        );
        // Once someone else took the slot, the claim is gone.
        run(&mut t, &["10.0.0.0:80", "10.0.0.1:80", "10.0.0.3:80"], &o);
        run(
            &mut t,
            &["10.0.0.0:80", "10.0.0.1:80", "10.0.0.3:80", "10.0.0.7:80"],
            &o,
        );
        let slots = run(
            &mut t,
            &[
                "10.0.0.0:80",
                "10.0.0.1:80",
                "10.0.0.3:80",
                "10.0.0.7:80",
                "10.0.0.2:80",
            ],
            &o,
        );
        assert_eq!(occupied(&slots)[1], (1, "10.0.0.7:80".into()));
        assert_eq!(occupied(&slots)[4], (4, "10.0.0.2:80".into()));
    }

    #[test]
    fn same_set_twice_changes_nothing() {
        let o = opts(4, 8);
        let mut t = SlotTable::default();
        let list = ["10.0.0.1:80", "10.0.0.2:80", "[fd00::1]:80"];
        let first = run(&mut t, &list, &o);
        assert_eq!(run(&mut t, &list, &o), first);
        run(&mut t, &["10.0.0.2:80"], &o);
        let after = run(&mut t, &list, &o);
        assert_eq!(after, run(&mut t, &list, &o));
    }

    #[test]
    fn grows_at_once_and_shrinks_with_hysteresis() {
        let o = opts(4, 8);
        let mut t = SlotTable::default();
        let many: Vec<String> = (1..=30).map(|i| format!("10.0.0.{i}:80")).collect();
        let refs = |n: usize| many.iter().take(n).map(String::as_str).collect::<Vec<_>>();
        assert_eq!(run(&mut t, &refs(4), &o).len(), 8);
        assert_eq!(run(&mut t, &refs(5), &o).len(), 16, "5 + 4 spare needs 16");
        assert_eq!(
            run(&mut t, &refs(4), &o).len(),
            16,
            "one block of slack is kept"
        );
        assert_eq!(run(&mut t, &refs(5), &o).len(), 16);
        assert_eq!(run(&mut t, &refs(30), &o).len(), 40);
        assert_eq!(
            run(&mut t, &refs(20), &o).len(),
            24,
            "two blocks over: shrink"
        );
        assert_eq!(run(&mut t, &refs(21), &o).len(), 32);
        assert_eq!(run(&mut t, &refs(20), &o).len(), 32);
    }

    #[test]
    fn never_shrinks_below_an_occupied_slot() {
        // No spares, blocks of one: without the rule the table would shrink to one slot.
        let o = opts(0, 1);
        let mut t = SlotTable::default();
        let many: Vec<String> = (1..=30).map(|i| format!("10.0.0.{i}:80")).collect();
        let all: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(run(&mut t, &all, &o).len(), 30);
        // Only the last endpoint (slot 29) stays: the table keeps 30 slots.
        let slots = run(&mut t, &all[29..], &o);
        assert_eq!(slots.len(), 30);
        assert_eq!(occupied(&slots), vec![(29, "10.0.0.30:80".into())]);
        // Once it is gone too, the table shrinks.
        assert!(run(&mut t, &[], &o).is_empty());
    }

    #[test]
    fn memory_forgets_gone_backends() {
        let mut m = SlotMemory::default();
        let a = addrs(&["10.0.0.1:80"]);
        m.table("be_a").assign(a.iter(), &opts(0, 1));
        m.table("be_b").assign(a.iter(), &opts(0, 1));
        m.retain(&["be_b"].into_iter().collect());
        assert_eq!(m.tables.keys().collect::<Vec<_>>(), vec!["be_b"]);
    }

    #[test]
    fn slot_names() {
        assert_eq!(slot_name(0), "s001");
        assert_eq!(slot_name(41), "s042");
        assert_eq!(slot_name(998), "s999");
        assert_eq!(slot_name(9_999), "s10000");
    }
}
