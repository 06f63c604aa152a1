//! The whole machine's CPU use, from `/proc/stat`.

/// The whole machine's CPU use between two moments (all processes: the
/// shop, the load generator, anything else running), from `/proc/stat`.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    busy: u64,
    total: u64,
}

impl CpuMeter {
    /// Starts measuring.
    pub fn start() -> Self {
        let (busy, total) = cpu_ticks();
        Self { busy, total }
    }

    /// Cores kept busy on average since [`CpuMeter::start`] (0 to the core count).
    pub fn busy_cores(&self) -> f64 {
        let (busy, total) = cpu_ticks();
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        let (busy, total) = (busy.saturating_sub(self.busy), total.saturating_sub(self.total));
        if total == 0 {
            return 0.0;
        }
        busy as f64 / total as f64 * cores
    }
}

/// Non-idle and total ticks of all CPUs (`idle` and `iowait` count as idle).
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|line| line.starts_with("cpu ")) else { return (0, 0) };
    let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest fields are inside user)
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}
