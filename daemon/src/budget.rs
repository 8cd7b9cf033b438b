//! The one budget for all of vx: `cpu_share` of the cores (vxd, its decoders
//! and hosts are pinned to them), `memory_mb` for the hosts and decoders
//! together (met by the size of each plugin's host pool) and `index_hours`
//! (kept by the queue, in `state.rs`). Status shows the plan.

use vx_config::Settings;
use vx_ctl_protocol::Budget;

/// CPU seconds per media second of each plugin's model, from
/// `bench/run.py` (BENCHMARKS.md): what a plugin costs next to the others.
const MODEL_COST: [(&str, f64); 5] = [
    ("ocr", 0.48),
    ("speech", 0.14),
    ("faces", 0.07),
    ("objects", 0.07),
    ("keyframes", 0.002),
];

/// Peak RSS of one host of each plugin in MB, from `bench/run.py`
/// (BENCHMARKS.md, rounded up).
const MODEL_MEMORY_MB: [(&str, u64); 6] = [
    ("ocr", 620),
    ("speech", 320),
    ("faces", 185),
    ("text-embed", 180),
    ("objects", 135),
    ("keyframes", 40),
];

/// Peak RSS of one decoder (frames of a 720p file at two sizes), from the
/// same run.
const DECODER_MB: u64 = 300;

fn cost(plugin: &str) -> f64 {
    MODEL_COST
        .iter()
        .find(|(name, _)| *name == plugin)
        .map_or(0.1, |(_, c)| *c)
}

fn memory_mb(plugin: &str) -> u64 {
    MODEL_MEMORY_MB
        .iter()
        .find(|(name, _)| *name == plugin)
        .map_or(300, |(_, m)| *m)
}

/// Hosts for each of `plugins` (those with a pool) on `cores` cores, and
/// the budget as status shows it. `host_pool_size` sets every pool when not
/// 0. Else each plugin gets its share of the plugins' CPU cost times the
/// cores, rounded up: on 2 cores OCR, which costs more than the rest
/// together, gets two hosts and the others one. If the hosts, the text
/// embedder's host and the decoders would pass `memory_mb` at their peak,
/// the pools are sized as for fewer cores until they fit, so they stay in
/// proportion to the cost. A budget too small for one host each is a
/// warning, returned with the plan.
pub fn plan(
    settings: &Settings,
    cores: usize,
    plugins: &[&str],
    embedder: bool,
) -> (Budget, Option<String>) {
    let total_cost: f64 = plugins.iter().map(|p| cost(p)).sum();
    let sizes_for = |cores: usize| -> Vec<usize> {
        plugins
            .iter()
            .map(|p| match settings.host_pool_size {
                0 => ((cost(p) / total_cost * cores as f64).ceil() as usize).max(1),
                n => n,
            })
            .collect()
    };
    let fixed = settings.jobs as u64 * DECODER_MB
        + if embedder {
            memory_mb(vx_config::TEXT_EMBED)
        } else {
            0
        };
    let need = |sizes: &[usize]| -> u64 {
        let hosts: u64 = plugins
            .iter()
            .zip(sizes)
            .map(|(p, n)| memory_mb(p) * *n as u64)
            .sum();
        fixed + hosts
    };
    let mut as_if = cores;
    while as_if > 1 && need(&sizes_for(as_if)) > settings.memory_mb {
        as_if -= 1;
    }
    let sizes = sizes_for(as_if);
    let planned_mb = need(&sizes);
    let warning = (planned_mb > settings.memory_mb).then(|| {
        format!(
            "memory_mb = {} is less than the hosts and decoders need at their peak ({planned_mb} \
             MB); they run anyway: lower jobs or host_pool_size, drop plugins, or raise memory_mb",
            settings.memory_mb
        )
    });
    let budget = Budget {
        cores: cores as u32,
        memory_mb: settings.memory_mb,
        planned_mb,
        hosts: plugins
            .iter()
            .zip(&sizes)
            .map(|(p, n)| (p.to_string(), *n as u32))
            .collect(),
        index_hours: (!settings.index_hours.is_empty()).then(|| settings.index_hours.clone()),
    };
    (budget, warning)
}

/// Keeps vxd, and the decoders and hosts it starts, on the first `cores`
/// CPUs: the `cpu_share` budget, enforced by the kernel without a cgroup.
pub fn pin_to_cores(cores: usize) {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores >= all {
        return;
    }
    // SAFETY: the set is zeroed and filled with CPU_SET before use, and
    // sched_getaffinity/sched_setaffinity only read or write it.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        let mut pinned: libc::cpu_set_t = std::mem::zeroed();
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &allowed))
            .take(cores)
            .for_each(|cpu| libc::CPU_SET(cpu, &mut pinned));
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &pinned) != 0 {
            tracing::warn!(
                "cannot keep to {cores} cores (cpu_share): {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&str; 5] = ["keyframes", "objects", "faces", "ocr", "speech"];

    fn hosts(
        memory_mb: u64,
        host_pool_size: usize,
        cores: usize,
    ) -> (Vec<u32>, Budget, Option<String>) {
        let s = Settings {
            jobs: 2,
            memory_mb,
            host_pool_size,
            ..Settings::default()
        };
        let (b, warning) = plan(&s, cores, &ALL, true);
        (b.hosts.iter().map(|(_, n)| *n).collect(), b, warning)
    }

    #[test]
    fn pools_follow_the_cost_when_memory_allows() {
        let (two, b, warning) = hosts(8000, 0, 2);
        assert_eq!(two, [1, 1, 1, 2, 1], "OCR gets two hosts on 2 cores");
        assert!(warning.is_none());
        // Two decoders, the embedder, two OCR hosts and one of each other.
        assert_eq!(b.planned_mb, 2 * 300 + 180 + 40 + 135 + 185 + 2 * 620 + 320);
        let (sixteen, ..) = hosts(1 << 20, 0, 16);
        assert_eq!(sixteen, [1, 2, 2, 11, 3]);
    }

    #[test]
    fn a_tight_memory_budget_sizes_the_pools_as_for_fewer_cores() {
        let (sixteen, b, warning) = hosts(3000, 0, 16);
        // As on 3 cores: 780 fixed + 2 OCR hosts + one of each other.
        assert_eq!(sixteen, [1, 1, 1, 2, 1]);
        assert_eq!(b.planned_mb, 2700);
        assert_eq!(b.cores, 16, "status shows the real cores");
        assert!(warning.is_none());
    }

    #[test]
    fn a_budget_below_one_host_each_is_a_warning() {
        let (n, _, warning) = hosts(500, 0, 8);
        assert_eq!(n, [1; 5], "one host each still runs");
        let w = warning.expect("a warning");
        assert!(w.contains("memory_mb = 500"), "{w}");
    }

    #[test]
    fn an_explicit_pool_size_is_kept() {
        let (n, _, warning) = hosts(100, 3, 2);
        assert_eq!(n, [3; 5]);
        assert!(warning.is_some());
    }
}
