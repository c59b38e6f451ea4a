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
//! * a removed endpoint's slot is *reserved* for the next [`RESERVED_CHANGES`] changes of the
//!   backend's endpoint set: it is rendered in maintenance (`disabled`) at the endpoint's old
//!   address, so the connections it still carries drain on their own and nothing new
//!   reaches it, and it is not handed to a new endpoint while a truly free slot exists;
//! * any other new endpoint takes the lowest truly free slot (never used, or its reservation
//!   is over), else the slot reserved the longest, new endpoints in address order;
//! * the slot count is a multiple of `block` with at least `min_spare` free slots; it grows
//!   when that is not met and shrinks only when more than a block would be left over, and
//!   never below the highest occupied slot.
//!
//! A fresh table assigns endpoints in address order to the first slots, so the same snapshot
//! renders byte-identically from any fresh renderer; assigning the same endpoint set twice in
//! a row changes nothing (reservations count changes of the endpoint set, not renders or
//! time, so equal input sequences give equal output and every node renders the same).

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

/// How many changes of a backend's endpoint set a removed endpoint's slot stays reserved.
pub(crate) const RESERVED_CHANGES: u64 = 3;

/// What a slot holds: in one render, or as a live config file says (read back by
/// [`live_slots`](super::live::live_slots)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotView {
    /// An endpoint (ready or draining).
    Endpoint(SocketAddr),
    /// Reserved for an endpoint that was removed: maintenance (`disabled`) at its old
    /// address.
    Leaving(SocketAddr),
    /// A spare slot.
    Spare,
}

impl SlotView {
    /// The endpoint in the slot, if any.
    #[cfg(test)]
    pub(crate) fn endpoint(self) -> Option<SocketAddr> {
        match self {
            Self::Endpoint(addr) => Some(addr),
            _ => None,
        }
    }
}

/// One server slot: its occupant, or while it is free the last endpoint that left it (never
/// both, so one address field holds either: 48 bytes a slot instead of 72, at 16 slots a
/// backend and thousands of backends).
#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    /// The occupant when `occupied`, else the last endpoint that left.
    addr: Option<SocketAddr>,
    occupied: bool,
    /// The table's change count when the last endpoint left.
    left_at: u64,
}

impl Slot {
    /// A slot `addr` sits in.
    fn occupied_by(addr: SocketAddr) -> Self {
        Self {
            addr: Some(addr),
            occupied: true,
            left_at: 0,
        }
    }

    /// A free slot `addr` left at change `left_at`.
    fn left_by(addr: SocketAddr, left_at: u64) -> Self {
        Self {
            addr: Some(addr),
            occupied: false,
            left_at,
        }
    }

    /// The endpoint in the slot.
    fn occupant(&self) -> Option<SocketAddr> {
        self.addr.filter(|_| self.occupied)
    }

    /// The last endpoint that left the slot, while it is free.
    fn previous(&self) -> Option<SocketAddr> {
        self.addr.filter(|_| !self.occupied)
    }

    /// Forgets who left the free slot; returns who it was.
    fn take_previous(&mut self) -> Option<SocketAddr> {
        if self.occupied {
            None
        } else {
            self.addr.take()
        }
    }
}

/// The slots of one backend.
///
/// Between two [`SlotTable::assign`] calls only the slots are kept: the two address indexes
/// are rebuilt from them for the length of one call and dropped after it (every backend of
/// every Service has a table, and at 5,000 backends the indexes weighed more than the slots).
#[derive(Debug, Default, Clone)]
pub(crate) struct SlotTable {
    /// The slots; the length is the slot count.
    slots: Vec<Slot>,
    /// The slot of each occupant (during `assign` only).
    by_addr: HashMap<SocketAddr, usize>,
    /// The slot each former occupant left, while it is still free (during `assign` only).
    previous: HashMap<SocketAddr, usize>,
    /// How many times the endpoint set changed.
    changes: u64,
}

impl SlotTable {
    /// Updates the table for `endpoints` (all of them, in address order) and returns what
    /// every slot holds, in slot order.
    pub(crate) fn assign<'a>(
        &mut self,
        endpoints: impl Iterator<Item = &'a SocketAddr> + Clone,
        opts: &SlotOptions,
    ) -> Vec<SlotView> {
        self.index();
        let views = self.assign_indexed(endpoints, opts);
        self.by_addr = HashMap::new();
        self.previous = HashMap::new();
        views
    }

    /// Fills the address indexes from the slots.
    fn index(&mut self) {
        self.by_addr.clear();
        self.previous.clear();
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(addr) = slot.occupant() {
                self.by_addr.insert(addr, i);
            }
            if let Some(addr) = slot.previous() {
                self.previous.insert(addr, i);
            }
        }
    }

    /// [`SlotTable::assign`] with the indexes filled.
    fn assign_indexed<'a>(
        &mut self,
        endpoints: impl Iterator<Item = &'a SocketAddr> + Clone,
        opts: &SlotOptions,
    ) -> Vec<SlotView> {
        let wanted: HashSet<SocketAddr> = endpoints.clone().copied().collect();
        let changed = wanted.len() != self.by_addr.len()
            || wanted.iter().any(|a| !self.by_addr.contains_key(a));
        if changed {
            self.changes += 1;
        }

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
            self.slots[slot] = Slot::left_by(addr, self.changes);
            self.previous.insert(addr, slot);
        }

        // Size the table: room for every endpoint plus the spares, in whole blocks, and never
        // below the highest slot still occupied.
        let block = opts.block.max(1) as usize;
        let highest_used = self
            .slots
            .iter()
            .rposition(|s| s.occupied)
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
        let mut cursor = 0;
        for addr in newcomers {
            let slot = match self.free_slot(&mut cursor) {
                Some(slot) => slot,
                None => {
                    // Cannot happen (the table was sized for every endpoint); stay correct.
                    self.slots.push(Slot::default());
                    self.slots.len() - 1
                }
            };
            self.place(addr, slot);
        }
        self.slots
            .iter()
            .map(|s| match (s.occupant(), s.previous()) {
                (Some(addr), _) => SlotView::Endpoint(addr),
                (None, Some(addr)) if self.reserved(s) => SlotView::Leaving(addr),
                (None, _) => SlotView::Spare,
            })
            .collect()
    }

    /// Whether a free slot is still reserved for the endpoint that left it.
    fn reserved(&self, slot: &Slot) -> bool {
        slot.previous().is_some() && self.changes.saturating_sub(slot.left_at) < RESERVED_CHANGES
    }

    /// The lowest truly free slot at or after `cursor` (no lower one exists: slots only fill
    /// up while newcomers are placed), else the free slot reserved the longest.
    fn free_slot(&self, cursor: &mut usize) -> Option<usize> {
        while let Some(slot) = self.slots.get(*cursor) {
            if !slot.occupied && !self.reserved(slot) {
                return Some(*cursor);
            }
            *cursor += 1;
        }
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.occupied)
            .min_by_key(|(i, s)| (s.left_at, *i))
            .map(|(i, _)| i)
    }

    /// Puts `addr` in the free slot `slot`; whoever left it has lost the claim to it.
    fn place(&mut self, addr: SocketAddr, slot: usize) {
        self.forget_previous(slot);
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Slot {
                left_at: s.left_at,
                ..Slot::occupied_by(addr)
            };
        }
        self.by_addr.insert(addr, slot);
    }

    fn forget_previous(&mut self, slot: usize) {
        if let Some(prev) = self.slots.get_mut(slot).and_then(Slot::take_previous) {
            self.previous.remove(&prev);
        }
    }
}

impl SlotTable {
    /// A table that carries on from the slots of a live config, so a new process (a restarted
    /// controller, `edgelb plan`) places endpoints where the edge already has them.
    pub(crate) fn from_live(live: &[SlotView]) -> Self {
        let mut table = Self::default();
        for slot in live {
            table.slots.push(match *slot {
                SlotView::Endpoint(addr) => Slot::occupied_by(addr),
                SlotView::Leaving(addr) => Slot::left_by(addr, 0),
                SlotView::Spare => Slot::default(),
            });
        }
        table
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

    /// Replaces the table of `backend`.
    pub(crate) fn seed(&mut self, backend: &str, table: SlotTable) {
        self.tables.insert(backend.to_owned(), table);
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
            .map(|s| s.endpoint().map(|a| a.to_string()))
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

    /// Between renders a table keeps its slots only; the next render still finds every
    /// endpoint and every reservation where it was.
    #[test]
    fn address_indexes_are_not_kept_between_renders() {
        let o = opts(2, 4);
        let mut t = SlotTable::default();
        run(&mut t, &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], &o);
        assert!(t.by_addr.is_empty() && t.previous.is_empty());
        run(&mut t, &["10.0.0.1:80", "10.0.0.3:80"], &o);
        assert!(t.by_addr.is_empty() && t.previous.is_empty());
        let slots = run(&mut t, &["10.0.0.2:80", "10.0.0.3:80", "10.0.0.1:80"], &o);
        assert_eq!(
            occupied(&slots),
            vec![
                (0, "10.0.0.1:80".into()),
                (1, "10.0.0.2:80".into()),
                (2, "10.0.0.3:80".into())
            ],
            "the returning endpoint takes back its reserved slot"
        );
    }

    #[test]
    fn a_slot_holds_one_address() {
        assert!(std::mem::size_of::<Slot>() <= 48);
    }

    #[test]
    fn empty_backend_still_gets_spare_slots() {
        let mut t = SlotTable::default();
        assert_eq!(run(&mut t, &[], &opts(4, 8)), vec![None; 8]);
        let mut t = SlotTable::default();
        assert!(run(&mut t, &[], &opts(0, 8)).is_empty());
    }

    fn views(table: &mut SlotTable, list: &[&str], o: &SlotOptions) -> Vec<String> {
        let a = addrs(list);
        table
            .assign(a.iter(), o)
            .into_iter()
            .map(|s| match s {
                SlotView::Endpoint(a) => a.to_string(),
                SlotView::Leaving(a) => format!("leaving {a}"),
                SlotView::Spare => "-".to_owned(),
            })
            .collect()
    }

    #[test]
    fn removed_endpoint_is_reserved_and_others_stay() {
        let o = opts(4, 8);
        let mut t = SlotTable::default();
        run(&mut t, &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], &o);
        let slots = views(&mut t, &["10.0.0.1:80", "10.0.0.3:80"], &o);
        assert_eq!(
            slots[..4],
            ["10.0.0.1:80", "leaving 10.0.0.2:80", "10.0.0.3:80", "-"]
        );
        // A new endpoint in the very next render takes a truly free slot, not the one the
        // removed endpoint may still have connections on.
        let slots = views(&mut t, &["10.0.0.1:80", "10.0.0.3:80", "10.0.0.9:80"], &o);
        assert_eq!(
            slots[..4],
            [
                "10.0.0.1:80",
                "leaving 10.0.0.2:80",
                "10.0.0.3:80",
                "10.0.0.9:80"
            ]
        );
        // Rendering the same set again changes nothing: reservations count changes.
        for _ in 0..5 {
            assert_eq!(
                views(&mut t, &["10.0.0.1:80", "10.0.0.3:80", "10.0.0.9:80"], &o)[1],
                "leaving 10.0.0.2:80"
            );
        }
        // Two more changes end the reservation; then the slot is an ordinary spare again.
        views(&mut t, &["10.0.0.1:80", "10.0.0.3:80"], &o);
        let slots = views(&mut t, &["10.0.0.1:80", "10.0.0.3:80", "10.0.0.9:80"], &o);
        assert_eq!(slots[1], "-");
        assert_eq!(slots[3], "10.0.0.9:80", "9 came back to its own slot");
        let slots = views(
            &mut t,
            &["10.0.0.1:80", "10.0.0.3:80", "10.0.0.9:80", "10.0.0.7:80"],
            &o,
        );
        assert_eq!(slots[1], "10.0.0.7:80", "the lowest truly free slot");
    }

    #[test]
    fn reserved_slots_are_reused_oldest_first_only_when_nothing_else_is_free() {
        let o = opts(0, 4);
        let mut t = SlotTable::default();
        run(&mut t, &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], &o);
        views(&mut t, &["10.0.0.2:80", "10.0.0.3:80"], &o); // 1 leaves first
        views(&mut t, &["10.0.0.3:80"], &o); // then 2
        // Slot 3 is truly free; then the oldest reservation (1's slot) goes first.
        let slots = views(
            &mut t,
            &["10.0.0.3:80", "10.0.0.7:80", "10.0.0.8:80", "10.0.0.9:80"],
            &o,
        );
        assert_eq!(
            slots[..4],
            ["10.0.0.8:80", "10.0.0.9:80", "10.0.0.3:80", "10.0.0.7:80"]
        );
    }

    #[test]
    fn equal_input_sequences_give_equal_output() {
        let o = opts(2, 4);
        let steps: [&[&str]; 6] = [
            &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"],
            &["10.0.0.1:80", "10.0.0.3:80"],
            &["10.0.0.1:80", "10.0.0.3:80", "10.0.0.5:80"],
            &["10.0.0.5:80"],
            &["10.0.0.2:80", "10.0.0.5:80", "10.0.0.6:80"],
            &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"],
        ];
        let (mut a, mut b) = (SlotTable::default(), SlotTable::default());
        for step in steps {
            assert_eq!(views(&mut a, step, &o), views(&mut b, step, &o));
            // A second node's render of the same snapshot sees the same slots.
            assert_eq!(views(&mut a, step, &o), views(&mut b, step, &o));
        }
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
        // Once someone else took the slot, the claim is gone: with no truly free slot left,
        // the reserved one is reused.
        let o = opts(0, 1);
        let mut t = SlotTable::default();
        run(&mut t, &["10.0.0.1:80", "10.0.0.2:80"], &o);
        run(&mut t, &["10.0.0.1:80"], &o);
        let slots = run(&mut t, &["10.0.0.1:80", "10.0.0.7:80"], &o);
        assert_eq!(occupied(&slots)[1], (1, "10.0.0.7:80".into()));
        let slots = run(&mut t, &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.7:80"], &o);
        assert_eq!(occupied(&slots)[2], (2, "10.0.0.2:80".into()));
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
    fn a_table_from_a_live_config_keeps_its_slots_and_reservations() {
        let o = opts(2, 4);
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let gone: SocketAddr = "10.0.0.9:80".parse().unwrap();
        let mut table = SlotTable::from_live(&[
            SlotView::Endpoint(b),
            SlotView::Leaving(gone),
            SlotView::Endpoint(a),
            SlotView::Spare,
        ]);
        let views = table.assign([a, b].iter(), &o);
        assert_eq!(
            views,
            vec![
                SlotView::Endpoint(b),
                SlotView::Leaving(gone),
                SlotView::Endpoint(a),
                SlotView::Spare
            ]
        );
    }

    #[test]
    fn slot_names() {
        assert_eq!(slot_name(0), "s001");
        assert_eq!(slot_name(41), "s042");
        assert_eq!(slot_name(998), "s999");
        assert_eq!(slot_name(9_999), "s10000");
    }
}
