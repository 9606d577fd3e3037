//! `ulp-ddp perf-compare`: the raw TCP baselines, NVMe/TCP and iSCSI against their embedded
//! targets, back to back with the same flags; medians and ratios.

use crate::perf::table_header;
use crate::perf::{PerfResult, PerfSpec, TcpBaseline, tcp_perf};

/// The flags of `ulp-ddp perf-compare`.
#[derive(clap::Args, Clone, Debug)]
pub struct CompareArgs {
    /// Rounds (at least 1); medians are taken over them
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub repeat: u64,
    #[command(flatten)]
    /// The raw TCP server's source span.
    pub span: crate::perf::tcp::SpanArg,
    #[command(flatten)]
    /// The perf flags, the same for every protocol.
    pub perf: crate::perf::PerfArgs,
    /// Run the whole comparison at each of these block sizes (4k,128k,1M), instead of at
    /// --bs alone
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = crate::args::size)]
    pub sweep: Vec<usize>,
    /// Draw the medians (throughput and host CPU per GB, per mode over the block sizes) as an
    /// SVG picture in FILE
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
}

/// `ulp-ddp perf-compare [flags] [--repeat N] [--span BYTES]`: the raw TCP baselines (stream
/// and request-response), then nvme and iscsi against their embedded targets, back to back with
/// the same flags, `N` rounds; prints every run, then the medians and each protocol's ratios to
/// both baselines.
pub fn compare_main(a: &CompareArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let repeat = usize::try_from(a.repeat).unwrap_or(1);
    let mut spec = a.perf.spec();
    let baseline = a.span.baseline();
    let json = spec.json;
    spec.json = false;
    let sizes = if a.sweep.is_empty() {
        vec![spec.bs]
    } else {
        a.sweep.clone()
    };
    let mut points = Vec::new();
    for bs in sizes {
        match compare_at(PerfSpec { bs, ..spec }, baseline, repeat, json) {
            Ok(p) => points.extend(p),
            Err(code) => return code,
        }
    }
    if let Some(path) = &a.plot {
        let title = format!(
            "ulp-ddp perf-compare: {} QD {}, digests {}, medians of {repeat} round{}",
            spec.op(),
            spec.qd,
            crate::args::digests_word(spec.digests),
            if repeat == 1 { "" } else { "s" }
        );
        let written = crate::plot::comparison_svg(&points, &title).and_then(|svg| {
            std::fs::write(path, svg).map_err(|e| format!("writing {}: {e}", path.display()))
        });
        if let Err(e) = written {
            eprintln!("ulp-ddp perf-compare --plot: {e}");
            return ExitCode::FAILURE;
        }
        eprintln!("perf-compare: plot written to {}", path.display());
    }
    ExitCode::SUCCESS
}

/// One comparison at `spec.bs`: `repeat` rounds, printed, then the medians printed; the
/// medians per mode as plot points.
fn compare_at(
    spec: PerfSpec,
    baseline: TcpBaseline,
    repeat: usize,
    json: bool,
) -> Result<Vec<crate::plot::PlotPoint>, std::process::ExitCode> {
    use std::process::ExitCode;
    const LABELS: [&str; 4] = ["tcp", "tcp-rr", "nvme-tcp", "iscsi"];
    let mut runs: Vec<[PerfResult; 4]> = Vec::new();
    if !json {
        crate::outln!("{}", table_header());
    }
    let tcp_spec = PerfSpec {
        write: false,
        digests: ulp_ddp_core::Digests::NONE,
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
            crate::nvme_cli::perf(&spec, None, 1, &crate::nvme_cli::TlsArgs::default()),
            crate::iscsi_cli::perf(&spec, None),
        ];
        let (done, errors): (Vec<_>, Vec<_>) = round.into_iter().partition(Result::is_ok);
        let Ok(round) =
            <[PerfResult; 4]>::try_from(done.into_iter().flatten().collect::<Vec<PerfResult>>())
        else {
            for e in errors.into_iter().filter_map(Result::err) {
                eprintln!("ulp-ddp perf-compare: {e}");
            }
            return Err(ExitCode::FAILURE);
        };
        if json {
            let runs: Vec<serde_json::Value> = round.iter().map(PerfResult::json_value).collect();
            crate::outln!("{}", serde_json::json!({ "runs": runs }));
        } else {
            for r in &round {
                crate::outln!("{}", r.table_row());
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
        let round4 = |v: f64| (v * 1e4).round() / 1e4;
        let g: serde_json::Map<String, serde_json::Value> = LABELS
            .iter()
            .zip(&gbps)
            .map(|(l, v)| ((*l).to_string(), round4(*v).into()))
            .collect();
        let r: serde_json::Map<String, serde_json::Value> = LABELS[2..]
            .iter()
            .zip(&ratios)
            .zip(&cpu)
            .map(|((l, [t, rr]), c)| {
                let c = c.is_finite().then(|| round4(*c));
                (
                    (*l).to_string(),
                    serde_json::json!({
                        "tcp": round4(*t),
                        "tcp-rr": round4(*rr),
                        "host_cpu_per_gb_vs_tcp": c,
                    }),
                )
            })
            .collect();
        crate::outln!(
            "{}",
            serde_json::json!({ "median_gbps": g, "median_ratio": r, "repeat": repeat })
        );
    } else {
        crate::outln!(
            "medians of {repeat} rounds, {} B {} QD {} digests {}: tcp {:.3} GB/s, tcp-rr {:.3} GB/s",
            spec.bs,
            spec.op(),
            spec.qd,
            crate::args::digests_word(spec.digests),
            gbps[0],
            gbps[1]
        );
        for (i, [t, rr]) in ratios.iter().enumerate() {
            crate::outln!(
                "  {:<8} {:.3} GB/s = {t:.2}x tcp, {rr:.2}x tcp-rr; host CPU per GB {:.2}x tcp's receiver",
                LABELS[i + 2],
                gbps[i + 2],
                cpu[i]
            );
        }
    }
    Ok((0..4)
        .map(|i| {
            let cpu = median(&|r| r[i].cpu_per_gb().unwrap_or(f64::NAN));
            crate::plot::PlotPoint {
                mode: LABELS[i].to_string(),
                bs: spec.bs,
                gbps: gbps[i],
                cpu_per_gb: cpu.is_finite().then_some(cpu),
            }
        })
        .collect())
}
