//! What a perf run does: its flags, parsed.

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// After this long (commands in flight then complete).
    Seconds(f64),
    /// After this many commands.
    Count(u64),
}

/// The shared perf flags.
#[derive(Clone, Debug, PartialEq)]
pub struct PerfSpec {
    /// Bytes per command.
    pub bs: usize,
    /// Queue depth.
    pub qd: usize,
    /// When to stop.
    pub limit: Limit,
    /// Writes instead of reads.
    pub write: bool,
    /// Header and data digests.
    pub digests: bool,
    /// Small-payload policy of the protocol drivers' readers: payload of reads expecting
    /// fewer bytes than this goes through the receive buffer (0: always in place).
    pub copy_below: u64,
    /// JSON output.
    pub json: bool,
    /// Progress bar allowed.
    pub progress: bool,
}

impl Default for PerfSpec {
    fn default() -> Self {
        Self {
            bs: 128 * 1024,
            qd: 8,
            limit: Limit::Seconds(3.0),
            write: false,
            digests: false,
            copy_below: 0,
            json: false,
            progress: true,
        }
    }
}

impl PerfSpec {
    /// Takes the perf flags out of `args`; returns the spec and the arguments it did not know
    /// (URLs, subcommand words), in order.
    ///
    /// # Errors
    ///
    /// A message for a bad or missing value.
    pub fn parse(args: &[String]) -> Result<(Self, Vec<String>), String> {
        let mut spec = Self::default();
        let mut rest = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| -> Result<String, String> {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            let num = |v: String, name: &str| -> Result<u64, String> {
                v.parse::<u64>().map_err(|e| format!("{name}: {e}"))
            };
            match arg.as_str() {
                "--bs" | "--size" => spec.bs = num(value(arg)?, arg)?.max(1) as usize,
                "--qd" => spec.qd = num(value(arg)?, arg)?.clamp(1, 1024) as usize,
                "--seconds" => {
                    let s: f64 = value(arg)?.parse().map_err(|e| format!("--seconds: {e}"))?;
                    if !(s.is_finite() && s > 0.0) {
                        return Err("--seconds must be positive".into());
                    }
                    spec.limit = Limit::Seconds(s);
                }
                "--count" => spec.limit = Limit::Count(num(value(arg)?, arg)?.max(1)),
                "--write" => spec.write = true,
                "--digests" => spec.digests = true,
                "--copy-below" => spec.copy_below = num(value(arg)?, arg)?,
                "--json" => spec.json = true,
                "--no-progress" => spec.progress = false,
                _ => rest.push(arg.clone()),
            }
        }
        Ok((spec, rest))
    }

    /// `read` or `write`.
    pub fn op(&self) -> &'static str {
        if self.write { "write" } else { "read" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags() {
        let (s, rest) = PerfSpec::parse(&args(
            "perf x://u --bs 4096 --qd 2 --count 9 --digests --json --copy-below 8192",
        ))
        .expect("parse");
        assert_eq!(rest, args("perf x://u"));
        assert_eq!(s.copy_below, 8192);
        assert_eq!(
            (s.bs, s.qd, s.limit, s.digests, s.json, s.write),
            (4096, 2, Limit::Count(9), true, true, false)
        );
        assert!(PerfSpec::parse(&args("--seconds 0")).is_err());
        assert!(PerfSpec::parse(&args("--bs")).is_err());
    }
}
