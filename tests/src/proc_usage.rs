//! What a process used, from `/proc`: CPU time (`/proc/<pid>/stat`) and peak RSS
//! (`VmHWM` of `/proc/<pid>/status`). The kernel counts CPU in clock ticks (100 per second
//! on Linux), so only sums over many changes are meaningful.

/// `/proc/self` or `/proc/<pid>`.
#[derive(Debug, Clone, Copy)]
pub enum Proc {
    /// This process.
    Own,
    /// Another process.
    Pid(u32),
}

impl Proc {
    fn path(self, file: &str) -> String {
        match self {
            Self::Own => format!("/proc/self/{file}"),
            Self::Pid(pid) => format!("/proc/{pid}/{file}"),
        }
    }

    /// The fields of `stat` after the command name (which may hold spaces), as numbers:
    /// index 0 is field 3 (the state, not a number: 0).
    fn stat_fields(self) -> Vec<f64> {
        let stat = std::fs::read_to_string(self.path("stat")).unwrap_or_default();
        stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| {
            rest.split_whitespace()
                .map(|v| v.parse().unwrap_or(0.0))
                .collect()
        })
    }

    fn ticks_ms(fields: &[f64], first: usize) -> f64 {
        const TICKS_PER_SEC: f64 = 100.0;
        let tick = |i: usize| fields.get(i).copied().unwrap_or(0.0);
        (tick(first) + tick(first + 1)) * 1000.0 / TICKS_PER_SEC
    }

    /// User + system CPU time of the process so far, in ms (`utime`, `stime`: fields 14
    /// and 15).
    pub fn cpu_ms(self) -> f64 {
        Self::ticks_ms(&self.stat_fields(), 11)
    }

    /// User + system CPU time of its waited-for children (and theirs), in ms (`cutime`,
    /// `cstime`: fields 16 and 17).
    pub fn children_cpu_ms(self) -> f64 {
        Self::ticks_ms(&self.stat_fields(), 13)
    }

    /// Its peak resident set size (`VmHWM`), in KiB.
    pub fn vm_hwm_kib(self) -> Option<u64> {
        let status = std::fs::read_to_string(self.path("status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        // Burn a little CPU so the tick counter moves past zero.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert!(x != 1);
        assert!(Proc::Own.cpu_ms() > 0.0);
        assert!(Proc::Own.children_cpu_ms() >= 0.0);
        assert!(Proc::Own.vm_hwm_kib().is_some_and(|k| k > 0));
        assert_eq!(
            Proc::Pid(std::process::id()).vm_hwm_kib().is_some(),
            Proc::Own.vm_hwm_kib().is_some()
        );
    }
}
