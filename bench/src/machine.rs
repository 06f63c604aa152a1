//! The machine a report was measured on: cores, CPU, memory, and the fsync
//! rate of the disk under the bench's data folder.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use bench_load::cpu::CpuMeter;

/// What a report says about the machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs this process may use.
    pub cores: usize,
    /// The CPU model, as the kernel names it.
    pub cpu: String,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// Durable 4 KiB appends per second: `write` + `fdatasync`, one after
    /// the other, to a file in the data folder.
    pub fsyncs_per_sec: f64,
    /// Their mean duration, milliseconds.
    pub fsync_mean_ms: f64,
    /// Where the fsync rate was measured.
    pub data_dir: String,
    /// The kernel release.
    pub kernel: String,
    /// Cores busy with other work during half a second before the run
    /// (anything much above 0 means the figures share the machine).
    pub busy_before_cores: f64,
}

impl Machine {
    /// Reads what the system says and measures fsyncs in `dir` for about `secs`.
    pub async fn measure(dir: &Path, secs: f64) -> anyhow::Result<Self> {
        let idle = CpuMeter::start();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let busy_before_cores = idle.busy_cores();
        let probe = dir.join("fsync-probe");
        let budget = Duration::from_secs_f64(secs.max(0.01));
        let (count, elapsed) = tokio::task::spawn_blocking(move || fsync_rate(&probe, budget)).await??;
        Ok(Self {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu: cpu_model(),
            memory_gib: memory_kib() as f64 / (1024.0 * 1024.0),
            fsyncs_per_sec: count as f64 / elapsed.as_secs_f64(),
            fsync_mean_ms: elapsed.as_secs_f64() * 1000.0 / count as f64,
            data_dir: dir.display().to_string(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            busy_before_cores,
        })
    }

    /// One line for the top of a report.
    pub fn describe(&self) -> String {
        format!(
            "{} cores ({}), {:.1} GiB memory, Linux {}; fsync: {:.0} durable 4 KiB appends/s \
             (write + fdatasync, mean {:.2} ms) in {}; other load before the run: {:.2} cores",
            self.cores,
            self.cpu,
            self.memory_gib,
            self.kernel,
            self.fsyncs_per_sec,
            self.fsync_mean_ms,
            self.data_dir,
            self.busy_before_cores
        )
    }
}

/// Appends 4 KiB and `fdatasync`s, again and again, for `budget`.
fn fsync_rate(path: &Path, budget: Duration) -> anyhow::Result<(u64, Duration)> {
    let mut file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
    let block = [0x5au8; 4096];
    let start = Instant::now();
    let mut count = 0u64;
    while count < 3 || start.elapsed() < budget {
        file.write_all(&block)?;
        file.sync_data()?;
        count += 1;
    }
    let elapsed = start.elapsed();
    drop(file);
    std::fs::remove_file(path)?;
    Ok((count, elapsed))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}

fn memory_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds used so far by this process's threads whose name starts with
/// `prefix` (`/proc/self/task/*/stat`).
pub fn thread_cpu_secs(prefix: &str) -> f64 {
    cpu_secs_under(Path::new("/proc/self/task"), prefix)
}

/// CPU seconds used so far by the machine's processes whose name starts with
/// `prefix` (`/proc/*/stat`): a server on this machine (`postgres`, the
/// Kafka broker's `java`). 0 if none is visible.
pub fn process_cpu_secs(prefix: &str) -> f64 {
    cpu_secs_under(Path::new("/proc"), prefix)
}

/// CPU seconds used so far by the machine's processes whose command line
/// contains `needle` (`/proc/*/cmdline`): a server whose process name says
/// little (Cassandra's `java`, like Kafka's). 0 if none is visible.
pub fn cmdline_cpu_secs(needle: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    let mut secs = 0.0;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if cmdline.windows(needle.len().max(1)).any(|w| w == needle.as_bytes()) {
            secs += stat_cpu_secs(&entry.path().join("stat"));
        }
    }
    secs
}

/// CPU seconds used so far by this process (every thread, those that ended too).
pub fn own_cpu_secs() -> f64 {
    stat_cpu_secs(Path::new("/proc/self/stat"))
}

/// CPU seconds used so far by process `pid` (every thread, those that ended
/// too; `/proc/<pid>/stat`). 0 once it has ended and been reaped.
pub fn pid_cpu_secs(pid: u32) -> f64 {
    stat_cpu_secs(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

/// User and system time of one `stat` file (a process's or a thread's).
fn stat_cpu_secs(path: &Path) -> f64 {
    const TICKS_PER_SEC: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string(path) else { return 0.0 };
    let Some(close) = stat.rfind(')') else { return 0.0 };
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SEC
}

/// User and system time, in clock ticks of 1/100 s, of the entries of `dir`
/// (`/proc` or a process's `task` folder) whose name starts with `prefix`.
fn cpu_secs_under(dir: &Path, prefix: &str) -> f64 {
    const TICKS_PER_SEC: f64 = 100.0;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0.0 };
    let mut ticks = 0u64;
    // Numeric entries only: /proc/self would count a process twice.
    let numeric =
        |entry: &std::fs::DirEntry| entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit());
    for entry in entries.flatten().filter(numeric) {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the name: state is field 3, utime 14 and stime 15 (1-based, whole line).
        ticks += fields.get(11).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        ticks += fields.get(12).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    }
    ticks as f64 / TICKS_PER_SEC
}
