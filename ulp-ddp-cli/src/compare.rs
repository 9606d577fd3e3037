//! `ulp-ddp perf-compare`: the raw TCP baselines, NVMe/TCP and iSCSI against their embedded
//! targets, back to back with the same flags; medians and ratios. With `--tls`, also NVMe/TCP
//! over TLS 1.3 (`nvme-tls`) and `openssl speed`'s AES-128-GCM as its limit.

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
    /// Also run nvme-tls (NVMe/TCP over TLS 1.3 against the embedded TLS target, with a
    /// generated key) and `openssl speed -evp aes-128-gcm` as its limit; the target encrypts
    /// on this same machine
    #[arg(long)]
    pub tls: bool,
}

/// The label of the NVMe/TCP-over-TLS mode.
const TLS_LABEL: &str = "nvme-tls";

/// The `openssl speed` run that gives the AES-128-GCM limit: one TLS record's worth of
/// plaintext (16 KiB) per operation, one second, machine-readable output.
const AES_SPEED: [&str; 8] = [
    "speed",
    "-mr",
    "-evp",
    "aes-128-gcm",
    "-bytes",
    "16384",
    "-seconds",
    "1",
];

/// `openssl speed -evp aes-128-gcm -bytes 16384 -seconds 1` on this machine, in GB/s (10^9
/// bytes per second, one core), or why it could not be measured.
pub fn aes_128_gcm_limit() -> Result<f64, String> {
    let out = std::process::Command::new("openssl")
        .args(AES_SPEED)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl speed failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_speed(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| "openssl speed printed no AES-128-GCM figure".to_string())
}

/// The bytes per second of `openssl speed -mr`'s `+F:N:AES-128-GCM:BYTES_PER_S` line, in GB/s.
fn parse_speed(text: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("+F:"))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.nth(1)?;
            let rate: f64 = f.next()?.trim().parse().ok()?;
            (name.eq_ignore_ascii_case("AES-128-GCM") && rate > 0.0).then_some(rate / 1e9)
        })
        .next()
}

/// A random configured PSK (SHA-256, from the operating system's generator) for the embedded
/// TLS target and the host of one `perf-compare --tls` run.
fn generated_tls() -> Result<crate::nvme_cli::TlsArgs, String> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("a random TLS key: {e}"))?;
    let psk = ulp_nvme_tcp::psk::ConfiguredPsk::new(ulp_nvme_tcp::psk::PskHash::Sha256, &key)
        .map_err(|e| format!("the generated TLS key: {e}"))?;
    Ok(crate::nvme_cli::TlsArgs {
        tls: true,
        key: Some(psk),
        ..crate::nvme_cli::TlsArgs::default()
    })
}

/// What `--tls` adds to each comparison: the host's TLS flags and the AES-128-GCM limit.
struct TlsMode {
    args: crate::nvme_cli::TlsArgs,
    aes_gbps: Option<f64>,
}

/// `ulp-ddp perf-compare [flags] [--repeat N] [--span BYTES]`: the raw TCP baselines (stream
/// and request-response), then nvme and iscsi against their embedded targets, back to back with
/// the same flags, `N` rounds; prints every run, then the medians and each protocol's ratios to
/// both baselines. With `--tls`, first the AES-128-GCM limit (`openssl speed`), then an
/// `nvme-tls` row per round (the embedded target serving TLS only, with a key generated for the
/// run) and its ratios to the same round's `nvme-tcp` and to that limit.
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
    let tls = if a.tls {
        let args = match generated_tls() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("ulp-ddp perf-compare --tls: {e}");
                return ExitCode::FAILURE;
            }
        };
        let aes = aes_128_gcm_limit();
        let command = format!("openssl {}", AES_SPEED.join(" "));
        if json {
            let gbps = aes.as_ref().ok().map(|g| (g * 1e4).round() / 1e4);
            crate::outln!(
                "{}",
                serde_json::json!({ "aes_128_gcm_limit": { "gbps": gbps, "command": command,
                    "error": aes.as_ref().err() } })
            );
        } else {
            match &aes {
                Ok(g) => crate::outln!(
                    "AES-128-GCM limit: {g:.3} GB/s ({command}: one core, 16 KiB records); \
                     nvme-tls's embedded target encrypts on this same machine, so host and \
                     target share its cores"
                ),
                Err(e) => crate::outln!("AES-128-GCM limit: not measured ({e})"),
            }
        }
        Some(TlsMode {
            args,
            aes_gbps: aes.ok(),
        })
    } else {
        None
    };
    let mut points = Vec::new();
    for bs in sizes {
        match compare_at(
            PerfSpec { bs, ..spec },
            baseline,
            repeat,
            json,
            tls.as_ref(),
        ) {
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
    tls: Option<&TlsMode>,
) -> Result<Vec<crate::plot::PlotPoint>, std::process::ExitCode> {
    use std::process::ExitCode;
    let mut labels = vec!["tcp", "tcp-rr", "nvme-tcp", "iscsi"];
    if tls.is_some() {
        labels.push(TLS_LABEL);
    }
    let modes = labels.len();
    let mut runs: Vec<Vec<PerfResult>> = Vec::new();
    if !json {
        crate::outln!("{}", table_header());
    }
    let tcp_spec = PerfSpec {
        write: false,
        digests: ulp_ddp_core::Digests::NONE,
        ..spec
    };
    for _ in 0..repeat {
        let mut round = vec![
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
        if let Some(t) = tls {
            round.push(
                crate::nvme_cli::perf(&spec, None, 1, &t.args).map(|r| PerfResult {
                    protocol: TLS_LABEL.into(),
                    ..r
                }),
            );
        }
        let (done, errors): (Vec<_>, Vec<_>) = round.into_iter().partition(Result::is_ok);
        if !errors.is_empty() {
            for e in errors.into_iter().filter_map(Result::err) {
                eprintln!("ulp-ddp perf-compare: {e}");
            }
            return Err(ExitCode::FAILURE);
        }
        let round: Vec<PerfResult> = done.into_iter().flatten().collect();
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
    let median = |f: &dyn Fn(&[PerfResult]) -> f64| -> f64 {
        let mut v: Vec<f64> = runs.iter().map(|r| f(r)).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // Mode a's host CPU per GB over mode b's, NaN if either is unknown.
    let cpu_ratio =
        |r: &[PerfResult], a: usize, b: usize| match (r[a].cpu_per_gb(), r[b].cpu_per_gb()) {
            (Some(x), Some(y)) if y > 0.0 => x / y,
            _ => f64::NAN,
        };
    let gbps: Vec<f64> = (0..modes).map(|i| median(&|r| r[i].gbps())).collect();
    // ratios[p][b]: protocol p (nvme-tcp, iscsi, nvme-tls) over baseline b (tcp, tcp-rr),
    // median per round
    let ratios: Vec<[f64; 2]> = (2..modes)
        .map(|p| [0, 1].map(|b| median(&|r| r[p].gbps() / r[b].gbps())))
        .collect();
    // Host CPU per GB of each protocol over the stream baseline's receiver (NaN if unknown).
    let cpu: Vec<f64> = (2..modes)
        .map(|p| median(&|r| cpu_ratio(r, p, 0)))
        .collect();
    // nvme-tls over plaintext nvme-tcp (the same round): throughput, host CPU per GB; and over
    // the AES-128-GCM limit.
    let tls_ratios = tls.map(|t| {
        let i = modes - 1;
        (
            median(&|r| r[i].gbps() / r[2].gbps()),
            median(&|r| cpu_ratio(r, i, 2)),
            t.aes_gbps.map(|a| gbps[i] / a),
        )
    });
    let round4 = |v: f64| (v * 1e4).round() / 1e4;
    let finite4 = |v: f64| v.is_finite().then(|| round4(v));
    if json {
        let g: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .zip(&gbps)
            .map(|(l, v)| ((*l).to_string(), round4(*v).into()))
            .collect();
        let mut r: serde_json::Map<String, serde_json::Value> = labels[2..]
            .iter()
            .zip(&ratios)
            .zip(&cpu)
            .map(|((l, [t, rr]), c)| {
                (
                    (*l).to_string(),
                    serde_json::json!({
                        "tcp": round4(*t),
                        "tcp-rr": round4(*rr),
                        "host_cpu_per_gb_vs_tcp": finite4(*c),
                    }),
                )
            })
            .collect();
        if let (Some((t, c, aes)), Some(serde_json::Value::Object(o))) =
            (tls_ratios, r.get_mut(TLS_LABEL))
        {
            o.insert("nvme-tcp".into(), round4(t).into());
            o.insert("host_cpu_per_gb_vs_nvme_tcp".into(), finite4(c).into());
            o.insert("aes_128_gcm_limit".into(), aes.map(round4).into());
        }
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
                labels[i + 2],
                gbps[i + 2],
                cpu[i]
            );
        }
        if let Some((t, c, aes)) = tls_ratios {
            let aes = aes.map_or_else(
                || "AES-128-GCM limit not measured".to_string(),
                |a| format!("{a:.2}x the AES-128-GCM limit"),
            );
            crate::outln!(
                "  {TLS_LABEL} vs nvme-tcp: {t:.2}x throughput, {c:.2}x host CPU per GB; {aes} \
                 (the embedded target encrypts on the same cores)"
            );
        }
    }
    Ok((0..modes)
        .map(|i| {
            let cpu = median(&|r| r[i].cpu_per_gb().unwrap_or(f64::NAN));
            crate::plot::PlotPoint {
                mode: labels[i].to_string(),
                bs: spec.bs,
                gbps: gbps[i],
                cpu_per_gb: cpu.is_finite().then_some(cpu),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::parse_speed;

    #[test]
    fn openssl_speed_machine_readable_output_parses_to_gb_per_s() {
        let out = "+DT:AES-128-GCM:1:16384\n+R:414449:AES-128-GCM:0.990000\n+H:16384\n\
                   +F:25:AES-128-GCM:6858921632.32\n";
        let g = parse_speed(out).expect("a figure");
        assert!((g - 6.858_921_632).abs() < 1e-6, "{g}");
        assert_eq!(parse_speed("+F:25:AES-256-GCM:1.0\n"), None);
        assert_eq!(parse_speed("+F:25:AES-128-GCM:nan-ish\n"), None);
        assert_eq!(parse_speed(""), None);
    }
}
