//! One perf run's result: the table row and the JSON object.

use std::time::Duration;

use ulp_ddp_core::Stats;

use super::histogram::Histogram;

/// What one perf run measured.
#[derive(Clone, Debug)]
pub struct PerfResult {
    /// `tcp`, `nvme-tcp`, `iscsi`.
    pub protocol: String,
    /// Where it ran (target description).
    pub target: String,
    /// `read` or `write`.
    pub op: &'static str,
    /// Bytes per command.
    pub bs: usize,
    /// Queue depth.
    pub qd: usize,
    /// Digests asked for.
    pub digests: ulp_ddp_core::Digests,
    /// Commands completed.
    pub commands: u64,
    /// Commands that failed (bad status, digest error).
    pub errors: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Latency per command, submit to completion.
    pub latency: Histogram,
    /// CPU time of the thread that ran the commands (the host side: the blocking driver, or
    /// the baseline's receiver), where the platform tells ([`thread_cpu`](super::thread_cpu)).
    pub host_cpu: Option<Duration>,
    /// Receive engine counters over the run.
    pub stats: Stats,
}

impl PerfResult {
    /// Commands per second.
    pub fn iops(&self) -> f64 {
        self.commands as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Payload GB/s (10^9 bytes).
    pub fn gbps(&self) -> f64 {
        self.commands as f64 * self.bs as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }

    /// Host CPU seconds per GB (10^9 bytes) of payload moved, if the CPU time is known.
    pub fn cpu_per_gb(&self) -> Option<f64> {
        let gb = self.commands as f64 * self.bs as f64 / 1e9;
        self.host_cpu
            .filter(|_| gb > 0.0)
            .map(|c| c.as_secs_f64() / gb)
    }

    /// Payload bytes that did not go through an intermediate buffer: read in place plus placed
    /// by a device.
    pub fn copies_avoided(&self) -> u64 {
        self.stats.bytes_read_in_place + self.stats.bytes_placed
    }

    /// The summary as one JSON object (keys as before serde_json: `digests` is true when any
    /// digest is on; `header_digest` and `data_digest` say which).
    pub fn json_value(&self) -> serde_json::Value {
        let s = &self.stats;
        let num = |v: f64, places: i32| {
            let p = 10f64.powi(places);
            serde_json::Value::from((v * p).round() / p)
        };
        serde_json::json!({
            "protocol": self.protocol,
            "target": self.target,
            "op": self.op,
            "bs": self.bs,
            "qd": self.qd,
            "digests": self.digests.header || self.digests.data,
            "header_digest": self.digests.header,
            "data_digest": self.digests.data,
            "commands": self.commands,
            "errors": self.errors,
            "seconds": num(self.elapsed.as_secs_f64(), 6),
            "iops": num(self.iops(), 1),
            "gbps": num(self.gbps(), 4),
            "lat_p50_us": num(us(self.latency.quantile(0.50)), 2),
            "lat_p99_us": num(us(self.latency.quantile(0.99)), 2),
            "lat_mean_us": num(us(self.latency.mean()), 2),
            "lat_max_us": num(us(self.latency.max()), 2),
            "lat_p90_us": num(us(self.latency.quantile(0.90)), 2),
            "lat_p99_9_us": num(us(self.latency.quantile(0.999)), 2),
            "lat_p99_99_us": num(us(self.latency.quantile(0.9999)), 2),
            "lat_percentiles_us": self
                .latency
                .percentiles()
                .iter()
                .map(|(name, v)| (name[1..].to_string(), num(us(*v), 2)))
                .collect::<serde_json::Map<_, _>>(),
            // [lowest ns, highest ns, commands] per bucket that holds any.
            "lat_histogram_ns": self
                .latency
                .buckets()
                .map(|(lo, hi, n)| [lo, hi, n])
                .collect::<Vec<_>>(),
            "host_cpu_s": self.host_cpu.map(|c| num(c.as_secs_f64(), 6)),
            "host_cpu_s_per_gb": self.cpu_per_gb().map(|c| num(c, 4)),
            "bytes_read_in_place": s.bytes_read_in_place,
            "bytes_copied": s.bytes_copied,
            "bytes_placed": s.bytes_placed,
            "cpu_copies_avoided_bytes": self.copies_avoided(),
            "digests_offloaded": s.digests_offloaded,
            "digests_computed": s.digests_computed,
            "digests_failed": s.digests_failed,
        })
    }

    /// The summary as one JSON object, serialized ([`json_value`](Self::json_value)).
    pub fn json(&self) -> String {
        self.json_value().to_string()
    }

    /// Prints the summary (table, or JSON with `spec.json`).
    pub fn print(&self, json: bool) {
        if json {
            crate::outln!("{}", self.json());
            return;
        }
        crate::outln!("{}", self.target);
        crate::outln!("{}", table_header());
        crate::outln!("{}", self.table_row());
    }

    /// One row of the summary table.
    pub fn table_row(&self) -> String {
        let s = &self.stats;
        format!(
            "{:<8} {:<5} {:>8} {:>3} {:>4} {:>9} {:>10.0} {:>7.3} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>10} {:>8} {:>8} {:>10} {:>16} {:>4}",
            self.protocol,
            self.op,
            self.bs,
            self.qd,
            crate::args::digests_word(self.digests),
            self.commands,
            self.iops(),
            self.gbps(),
            us(self.latency.quantile(0.50)),
            us(self.latency.quantile(0.90)),
            us(self.latency.quantile(0.99)),
            us(self.latency.quantile(0.999)),
            us(self.latency.quantile(0.9999)),
            self.cpu_per_gb()
                .map_or_else(|| "-".to_string(), |c| format!("{c:.3}")),
            mb(s.bytes_read_in_place),
            mb(s.bytes_copied),
            mb(s.bytes_placed),
            mb(self.copies_avoided()),
            format!(
                "{}/{}/{}",
                s.digests_offloaded, s.digests_computed, s.digests_failed
            ),
            self.errors
        )
    }
}

/// The summary table's header line.
pub fn table_header() -> String {
    format!(
        "{:<8} {:<5} {:>8} {:>3} {:>4} {:>9} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>8} {:>8} {:>10} {:>16} {:>4}\n{}",
        "proto",
        "op",
        "bs",
        "qd",
        "dgst",
        "commands",
        "IOPS",
        "GB/s",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9 us",
        "p99.99us",
        "cpu s/GB",
        "inplace MB",
        "copy MB",
        "dev MB",
        "avoided MB",
        "dgst off/cmp/bad",
        "errs",
        "(cpu s/GB = host thread CPU seconds per GB of payload; avoided = payload not copied through an intermediate buffer: read in place + placed by a device)"
    )
}

fn us(nanos: u64) -> f64 {
    nanos as f64 / 1e3
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> PerfResult {
        let mut latency = Histogram::default();
        for v in 1..=1000u64 {
            latency.record(v * 1000);
        }
        PerfResult {
            protocol: "nvme-tcp".into(),
            target: "t".into(),
            op: "read",
            bs: 4096,
            qd: 1,
            digests: ulp_ddp_core::Digests::NONE,
            commands: 1000,
            errors: 0,
            elapsed: Duration::from_secs(1),
            latency,
            host_cpu: None,
            stats: Stats::default(),
        }
    }

    #[test]
    fn percentiles_and_histogram_in_json_and_table() {
        let r = result();
        let v = r.json_value();
        let j = r.json();
        for key in [
            "\"lat_p50_us\":",
            "\"lat_p90_us\":",
            "\"lat_p99_us\":",
            "\"lat_p99_9_us\":",
            "\"lat_p99_99_us\":",
        ] {
            assert!(j.contains(key), "{key} in {j}");
        }
        let p = &v["lat_percentiles_us"];
        assert_eq!(p["99.99"], 1000.0, "{j}");
        assert!(
            p["50"].as_f64().is_some_and(|x| (x - 500.0).abs() < 20.0),
            "{j}"
        );
        assert!(p["90"].is_number() && p["99"].is_number() && p["99.9"].is_number());
        let hist = v["lat_histogram_ns"].as_array().expect("histogram");
        let total: u64 = hist.iter().map(|b| b[2].as_u64().expect("count")).sum();
        assert_eq!(total, 1000, "{j}");
        assert!(hist.iter().all(|b| b[0].as_u64() <= b[1].as_u64()), "{j}");
        assert!(table_header().contains("p90 us") && table_header().contains("p99.99us"));
        let cols = r.table_row().split_whitespace().count();
        assert_eq!(
            cols,
            table_header()
                .lines()
                .next()
                .unwrap()
                .split_whitespace()
                .count()
                - 10
        );
    }
}
