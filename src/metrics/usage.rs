//! Histograms of what sessions used, per image: CPU seconds and peak
//! memory, observed once per session at the function's exit. Images are
//! few (those the config names), so the map stays small.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::wire::api::Usage;

const CPU_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];
const MIB: f64 = 1024.0 * 1024.0;
const MEMORY_BUCKETS: [f64; 9] = [
    16.0 * MIB,
    32.0 * MIB,
    64.0 * MIB,
    128.0 * MIB,
    256.0 * MIB,
    512.0 * MIB,
    1024.0 * MIB,
    2048.0 * MIB,
    4096.0 * MIB,
];

#[derive(Default, Clone)]
struct Hist {
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Hist {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        self.buckets.resize(bounds.len(), 0);
        for (i, le) in bounds.iter().enumerate() {
            if v <= *le {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }

    fn render(&self, out: &mut String, name: &str, image: &str, bounds: &[f64]) {
        for (i, le) in bounds.iter().enumerate() {
            let n = self.buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{image=\"{image}\",le=\"{le}\"}} {n}");
        }
        let c = self.count;
        let _ = writeln!(out, "{name}_bucket{{image=\"{image}\",le=\"+Inf\"}} {c}");
        let _ = writeln!(out, "{name}_sum{{image=\"{image}\"}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{image=\"{image}\"}} {c}");
    }
}

static BY_IMAGE: Mutex<BTreeMap<String, (Hist, Hist)>> = Mutex::new(BTreeMap::new());

/// Records a session's final usage under its image.
pub fn observe_usage(image: &str, u: &Usage) {
    let mut map = BY_IMAGE.lock().unwrap_or_else(|p| p.into_inner());
    let (cpu, mem) = map.entry(image.to_string()).or_default();
    cpu.observe(&CPU_BUCKETS, u.cpu_secs());
    mem.observe(&MEMORY_BUCKETS, u.peak_memory_bytes as f64);
}

/// Appends both histograms, every image's, to `out`.
pub fn render(out: &mut String) {
    let map = BY_IMAGE.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let cpu = "bento_session_cpu_seconds";
    let _ = writeln!(out, "# HELP {cpu} CPU time (user and system) a session's function used, per image, as the engine measured it.\n# TYPE {cpu} histogram");
    for (image, (h, _)) in &map {
        h.render(out, cpu, image, &CPU_BUCKETS);
    }
    let mem = "bento_session_peak_memory_bytes";
    let _ = writeln!(
        out,
        "# HELP {mem} Peak memory of a session's container, per image.\n# TYPE {mem} histogram"
    );
    for (image, (_, h)) in &map {
        h.render(out, mem, image, &MEMORY_BUCKETS);
    }
}
