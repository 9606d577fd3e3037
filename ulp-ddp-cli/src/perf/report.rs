//! One perf run's result: the table row and the JSON object.

use std::fmt::Write as _;
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
    /// Digests on.
    pub digests: bool,
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

    /// The summary as one JSON object.
    pub fn json(&self) -> String {
        let s = &self.stats;
        let mut o = String::from("{");
        let _ = write!(
            o,
            "\"protocol\":{},\"target\":{},\"op\":\"{}\",\"bs\":{},\"qd\":{},\"digests\":{},\
             \"commands\":{},\"errors\":{},\"seconds\":{:.6},\"iops\":{:.1},\"gbps\":{:.4},\
             \"lat_p50_us\":{:.2},\"lat_p99_us\":{:.2},\"lat_mean_us\":{:.2},\"lat_max_us\":{:.2},\
             \"lat_p90_us\":{:.2},\"lat_p99_9_us\":{:.2},\"lat_p99_99_us\":{:.2},\
             \"host_cpu_s\":{},\"host_cpu_s_per_gb\":{},\
             \"bytes_read_in_place\":{},\"bytes_copied\":{},\"bytes_placed\":{},\
             \"cpu_copies_avoided_bytes\":{},\"digests_offloaded\":{},\"digests_computed\":{},\
             \"digests_failed\":{}",
            json_str(&self.protocol),
            json_str(&self.target),
            self.op,
            self.bs,
            self.qd,
            self.digests,
            self.commands,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.iops(),
            self.gbps(),
            us(self.latency.quantile(0.50)),
            us(self.latency.quantile(0.99)),
            us(self.latency.mean()),
            us(self.latency.max()),
            us(self.latency.quantile(0.90)),
            us(self.latency.quantile(0.999)),
            us(self.latency.quantile(0.9999)),
            self.host_cpu
                .map_or_else(|| "null".to_string(), |c| format!("{:.6}", c.as_secs_f64())),
            self.cpu_per_gb()
                .map_or_else(|| "null".to_string(), |c| format!("{c:.4}")),
            s.bytes_read_in_place,
            s.bytes_copied,
            s.bytes_placed,
            self.copies_avoided(),
            s.digests_offloaded,
            s.digests_computed,
            s.digests_failed
        );
        o.push_str(",\"lat_percentiles_us\":{");
        for (i, (name, v)) in self.latency.percentiles().iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(o, "{sep}\"{}\":{:.2}", &name[1..], us(*v));
        }
        // The histogram: [lowest ns, highest ns, commands] per bucket that holds any.
        o.push_str("},\"lat_histogram_ns\":[");
        for (i, (lo, hi, n)) in self.latency.buckets().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(o, "{sep}[{lo},{hi},{n}]");
        }
        o.push_str("]}");
        o
    }

    /// Prints the summary (table, or JSON with `spec.json`).
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", self.json());
            return;
        }
        println!("{}", self.target);
        println!("{}", table_header());
        println!("{}", self.table_row());
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
            if self.digests { "on" } else { "off" },
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

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
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
            digests: false,
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
        assert!(
            j.contains("\"lat_percentiles_us\":{\"50\":") && j.contains(",\"99.99\":1000.00}"),
            "{j}"
        );
        let hist = &j[j.find("\"lat_histogram_ns\":[").expect("histogram") + 19..];
        let total: u64 = hist
            .trim_end_matches(['}', ']'])
            .trim_start_matches('[')
            .split("],[")
            .map(|b| b.rsplit(',').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, 1000, "{hist}");
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
