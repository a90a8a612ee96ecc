//! What `huiying load` prints: throughput, latency per stage, and each process's memory
//! and CPU time per job.

use std::time::Duration;

use super::{LoadArgs, Process};

/// Linux reports CPU time in /proc in units of USER_HZ, which is 100 on every platform
/// Rust targets (the kernel's own tick rate is hidden behind it).
const USER_HZ: f64 = 100.0;

/// A `kB` field of /proc/<pid>/status (Linux).
pub(super) fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time a process has used so far, user and system, all threads (Linux).
pub(super) fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, so split after its ')'):
    // state is field 3 of the whole line, utime 14 and stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / USER_HZ))
}

pub(super) fn report(
    args: &LoadArgs,
    accepted: &[Duration],
    submitted_in: Duration,
    finished_in: Duration,
    stages: &[(&'static str, Vec<f64>)],
    processes: &mut [Process],
) {
    let secs = finished_in.as_secs_f64();
    println!("  accepted {} of {} jobs; submitted in {:.1} s", accepted.len(), args.jobs, submitted_in.as_secs_f64());
    println!(
        "  all mails written after {secs:.1} s: {:.1} jobs/s through the whole pipeline",
        accepted.len() as f64 / secs
    );
    let mut answers: Vec<f64> = accepted.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    println!("  latency in ms          {:>8} {:>8} {:>8} {:>8}", "p50", "p90", "p99", "max");
    println!("  {:<38}{}", "ingest (POST → 202)", percentiles(&mut answers));
    for (name, values) in stages {
        let mut values = values.clone();
        println!("  {name:<38}{}", percentiles(&mut values));
    }
    if processes.is_empty() {
        return; // a pipeline started by someone else (`--against`): its processes are not ours to read
    }
    println!("  memory (RSS, MiB)      {:>8} {:>8} {:>8}   CPU ms per job", "at 25%", "at end", "peak");
    let jobs = accepted.len().max(1) as f64;
    let mut cpu_sum = 0.0;
    for process in processes.iter_mut() {
        let pid = process.child.id();
        let peak = pid.and_then(|pid| proc_status_kib(pid, "VmHWM")).unwrap_or(0);
        let at = |fraction: f64| {
            let time = secs * fraction;
            process.samples.iter().rev().find(|(t, _)| *t <= time).map_or(0, |(_, rss)| *rss)
        };
        let mib = |kib: u64| kib as f64 / 1024.0;
        let cpu = pid.and_then(cpu_time).map(|now| now.saturating_sub(process.cpu_before));
        let cpu_per_job = cpu.map_or(0.0, |cpu| cpu.as_secs_f64() * 1000.0 / jobs);
        cpu_sum += cpu_per_job;
        println!(
            "  {:<22}{:>8.1} {:>8.1} {:>8.1}   {cpu_per_job:>6.2}",
            process.name,
            mib(at(0.25)),
            mib(at(1.0)),
            mib(peak)
        );
    }
    println!("  {:<49}{cpu_sum:>6.2}", "CPU per job, all processes");
}

/// `p50 p90 p99 max` of `values`, in columns.
fn percentiles(values: &mut [f64]) -> String {
    if values.is_empty() {
        return "   (none)".into();
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    format!("{:>8.1} {:>8.1} {:>8.1} {:>8.1}", at(0.5), at(0.9), at(0.99), values[values.len() - 1])
}
