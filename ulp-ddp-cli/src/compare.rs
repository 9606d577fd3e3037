//! `ulp-ddp perf-compare`: the raw TCP baselines, NVMe/TCP and iSCSI against their embedded
//! targets, back to back with the same flags; medians and ratios.

use crate::perf::table_header;
use crate::perf::{FLAGS, PerfResult, PerfSpec, TcpBaseline, tcp_perf};

/// `ulp-ddp perf-compare [flags] [--repeat N] [--span BYTES]`: the raw TCP baselines (stream
/// and request-response), then nvme and iscsi against their embedded targets, back to back with
/// the same flags, `N` rounds; prints every run, then the medians and each protocol's ratios to
/// both baselines.
pub fn compare_main(args: &[String]) -> std::process::ExitCode {
    use std::process::ExitCode;
    let mut repeat = 3usize;
    let mut filtered = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--repeat" {
            match it.next().and_then(|v| v.parse().ok()) {
                Some(n) => repeat = usize::max(n, 1),
                None => {
                    eprintln!("ulp-ddp perf-compare: --repeat needs a number");
                    return ExitCode::from(2);
                }
            }
        } else {
            filtered.push(a.clone());
        }
    }
    let parsed = PerfSpec::parse(&filtered)
        .and_then(|(spec, rest)| TcpBaseline::parse(&rest).map(|(b, rest)| (spec, b, rest)));
    let (mut spec, baseline, rest) = match parsed {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ulp-ddp perf-compare: {e}");
            return ExitCode::from(2);
        }
    };
    if !rest.is_empty() || baseline.request_response {
        eprintln!(
            "usage: ulp-ddp perf-compare [--repeat N] [--span BYTES] [flags]\n  raw TCP (stream, then request-response), nvme and iscsi perf back to back on\n  loopback (embedded targets); --span: the TCP server's source bytes\n{FLAGS}"
        );
        return if rest.iter().any(|a| a == "-h" || a == "--help") {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        };
    }
    let json = spec.json;
    spec.json = false;
    const LABELS: [&str; 4] = ["tcp", "tcp-rr", "nvme-tcp", "iscsi"];
    let mut runs: Vec<[PerfResult; 4]> = Vec::new();
    if !json {
        println!("{}", table_header());
    }
    let tcp_spec = PerfSpec {
        write: false,
        digests: false,
        ..spec
    };
    for _ in 0..repeat {
        let round = [
            tcp_perf(&tcp_spec, baseline),
            tcp_perf(
                &tcp_spec,
                TcpBaseline {
                    request_response: true,
                    ..baseline
                },
            ),
            crate::nvme_cli::perf(&spec, None, 1),
            crate::iscsi_cli::perf(&spec, None),
        ];
        let (done, errors): (Vec<_>, Vec<_>) = round.into_iter().partition(Result::is_ok);
        let Ok(round) =
            <[PerfResult; 4]>::try_from(done.into_iter().flatten().collect::<Vec<PerfResult>>())
        else {
            for e in errors.into_iter().filter_map(Result::err) {
                eprintln!("ulp-ddp perf-compare: {e}");
            }
            return ExitCode::FAILURE;
        };
        if json {
            let parts: Vec<String> = round.iter().map(PerfResult::json).collect();
            println!("{{\"runs\":[{}]}}", parts.join(","));
        } else {
            for r in &round {
                println!("{}", r.table_row());
            }
        }
        runs.push(round);
    }
    let median = |f: &dyn Fn(&[PerfResult; 4]) -> f64| -> f64 {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let gbps: Vec<f64> = (0..4).map(|i| median(&|r| r[i].gbps())).collect();
    // ratios[p][b]: protocol p (nvme-tcp, iscsi) over baseline b (tcp, tcp-rr), median per round
    let ratios: Vec<[f64; 2]> = (2..4)
        .map(|p| [0, 1].map(|b| median(&|r| r[p].gbps() / r[b].gbps())))
        .collect();
    // Host CPU per GB of each protocol over the stream baseline's receiver (NaN if unknown).
    let cpu: Vec<f64> = (2..4)
        .map(|p| {
            median(&|r| match (r[p].cpu_per_gb(), r[0].cpu_per_gb()) {
                (Some(a), Some(b)) if b > 0.0 => a / b,
                _ => f64::NAN,
            })
        })
        .collect();
    if json {
        let g: Vec<String> = LABELS
            .iter()
            .zip(&gbps)
            .map(|(l, v)| format!("\"{l}\":{v:.4}"))
            .collect();
        let r: Vec<String> = LABELS[2..]
            .iter()
            .zip(&ratios)
            .zip(&cpu)
            .map(|((l, [t, rr]), c)| {
                let c = if c.is_finite() {
                    format!("{c:.4}")
                } else {
                    "null".into()
                };
                format!(
                    "\"{l}\":{{\"tcp\":{t:.4},\"tcp-rr\":{rr:.4},\"host_cpu_per_gb_vs_tcp\":{c}}}"
                )
            })
            .collect();
        println!(
            "{{\"median_gbps\":{{{}}},\"median_ratio\":{{{}}},\"repeat\":{repeat}}}",
            g.join(","),
            r.join(",")
        );
    } else {
        println!(
            "medians of {repeat} rounds, {} B {} QD {} digests {}: tcp {:.3} GB/s, tcp-rr {:.3} GB/s",
            spec.bs,
            spec.op(),
            spec.qd,
            if spec.digests { "on" } else { "off" },
            gbps[0],
            gbps[1]
        );
        for (i, [t, rr]) in ratios.iter().enumerate() {
            println!(
                "  {:<8} {:.3} GB/s = {t:.2}x tcp, {rr:.2}x tcp-rr; host CPU per GB {:.2}x tcp's receiver",
                LABELS[i + 2],
                gbps[i + 2],
                cpu[i]
            );
        }
    }
    ExitCode::SUCCESS
}
