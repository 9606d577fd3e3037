//! `nvme-tcp://` URLs: `nvme-tcp://HOST[:PORT]/SUBNQN/NSID` for a namespace, and
//! `nvme-tcp://HOST[:PORT]` for a discovery controller (port 4420 unless given; an IPv6 host in
//! brackets, as `nvme connect -a` takes it without them).
//!
//! ```
//! use ulp_nvme_tcp::NvmeTcpUrl;
//!
//! let url = NvmeTcpUrl::parse("nvme-tcp://[::1]/nqn.2024-01.io.example:disk/1")?;
//! assert_eq!((url.host.as_str(), url.port, url.nsid), ("::1", 4420, 1));
//! assert_eq!(url.addr(), "[::1]:4420");
//! let err = NvmeTcpUrl::parse("nvme://host/nqn/1").unwrap_err();
//! assert_eq!(err.to_string(), r#"bad NVMe/TCP URL "nvme://host/nqn/1": it must start with nvme-tcp://"#);
//! # Ok::<(), ulp_nvme_tcp::UrlError>(())
//! ```

use core::fmt;

use crate::nvme::DISCOVERY_NQN;

/// The NVMe/TCP port IANA assigned (and Linux's default for `nvme connect`).
pub const DEFAULT_PORT: u16 = 4420;

/// A parsed `nvme-tcp://` URL.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct NvmeTcpUrl {
    /// Host name or address; an IPv6 address without its URL brackets (`::1`).
    pub host: String,
    /// TCP port (4420 unless given).
    pub port: u16,
    /// The subsystem NQN (the discovery NQN for a discovery URL).
    pub subnqn: String,
    /// The namespace ID (0 for a discovery URL).
    pub nsid: u32,
}

/// Why a URL did not parse: the URL and what is wrong with it.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct UrlError {
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad NVMe/TCP URL {:?}: {}", self.url, self.reason)
    }
}

impl std::error::Error for UrlError {}

impl NvmeTcpUrl {
    /// Parses `nvme-tcp://HOST[:PORT]/SUBNQN/NSID`.
    ///
    /// # Errors
    ///
    /// [`UrlError`] quoting the URL and saying which part is wrong.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let e = |reason: String| UrlError {
            url: url.to_string(),
            reason,
        };
        let rest = scheme(url).map_err(e)?;
        let (hostport, path) = rest
            .split_once('/')
            .ok_or_else(|| e("missing /SUBNQN/NSID".into()))?;
        let (host, port) = host_port(hostport).map_err(e)?;
        let (subnqn, nsid) = path
            .rsplit_once('/')
            .ok_or_else(|| e("missing /NSID after the NQN".into()))?;
        let nsid = match nsid.parse() {
            Ok(n) if n != 0 && n != u32::MAX => n,
            _ => return Err(e(format!("bad NSID {nsid:?} (1 to 4294967294)"))),
        };
        if subnqn.is_empty() {
            return Err(e("empty NQN".into()));
        }
        Ok(Self {
            host,
            port,
            subnqn: subnqn.to_string(),
            nsid,
        })
    }

    /// Parses `nvme-tcp://HOST[:PORT][/]`, a discovery controller: the subsystem is the
    /// discovery NQN, the NSID 0.
    ///
    /// # Errors
    ///
    /// [`UrlError`] quoting the URL and saying which part is wrong.
    pub fn parse_discovery(url: &str) -> Result<Self, UrlError> {
        let e = |reason: String| UrlError {
            url: url.to_string(),
            reason,
        };
        let rest = scheme(url).map_err(e)?;
        let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !path.is_empty() {
            return Err(e(format!(
                "a discovery URL has no path (got /{path}): nvme-tcp://HOST[:PORT]"
            )));
        }
        let (host, port) = host_port(hostport).map_err(e)?;
        Ok(Self {
            host,
            port,
            subnqn: DISCOVERY_NQN.to_string(),
            nsid: 0,
        })
    }

    /// `HOST:PORT`, an IPv6 host in brackets: what `TcpStream::connect` takes.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for NvmeTcpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nvme-tcp://{}", self.addr())?;
        if self.nsid != 0 {
            write!(f, "/{}/{}", self.subnqn, self.nsid)?;
        }
        Ok(())
    }
}

fn scheme(url: &str) -> Result<&str, String> {
    url.strip_prefix("nvme-tcp://")
        .ok_or_else(|| "it must start with nvme-tcp://".to_string())
}

/// Splits `HOST[:PORT]` (`[v6]` or `[v6]:PORT` for an IPv6 address) with the default port.
fn host_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or("an IPv6 host needs its closing ]")?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{h:?} in brackets is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("{after:?} after the ] (expected :PORT)"))?,
            ),
        };
        (h.to_string(), port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) if !p.contains(':') => (h.to_string(), Some(p)),
            Some(_) => return Err("an IPv6 host goes in brackets: [::1]:4420".into()),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    let port = match port {
        Some(p) => match p.parse() {
            Ok(0) | Err(_) => return Err(format!("bad port {p:?} (1 to 65535)")),
            Ok(p) => p,
        },
        None => DEFAULT_PORT,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16, subnqn: &str, nsid: u32) -> NvmeTcpUrl {
        NvmeTcpUrl {
            host: host.into(),
            port,
            subnqn: subnqn.into(),
            nsid,
        }
    }

    #[test]
    fn namespaces_with_and_without_ports_and_ipv6() {
        let p = |s: &str| NvmeTcpUrl::parse(s).expect(s);
        assert_eq!(
            p("nvme-tcp://127.0.0.1:4421/nqn.2024-01.io.x:ram0/2"),
            url("127.0.0.1", 4421, "nqn.2024-01.io.x:ram0", 2)
        );
        assert_eq!(p("nvme-tcp://h/n/1"), url("h", 4420, "n", 1));
        assert_eq!(p("nvme-tcp://[::1]:4421/n/2"), url("::1", 4421, "n", 2));
        assert_eq!(p("nvme-tcp://[fe80::1]/n/1").addr(), "[fe80::1]:4420");
        assert_eq!(p("nvme-tcp://h:9/n/1").to_string(), "nvme-tcp://h:9/n/1");
    }

    #[test]
    fn discovery_urls() {
        let d = NvmeTcpUrl::parse_discovery("nvme-tcp://10.0.0.1").expect("discovery");
        assert_eq!(d, url("10.0.0.1", 4420, DISCOVERY_NQN, 0));
        assert_eq!(
            NvmeTcpUrl::parse_discovery("nvme-tcp://[::1]:8009/")
                .expect("v6")
                .addr(),
            "[::1]:8009"
        );
        let e = NvmeTcpUrl::parse_discovery("nvme-tcp://h/n/1").unwrap_err();
        assert!(e.reason.contains("no path"), "{e}");
    }

    #[test]
    fn every_bad_part_is_named_and_the_url_quoted() {
        for (u, why) in [
            ("nvme://h/n/1", "it must start with nvme-tcp://"),
            ("nvme-tcp://h", "missing /SUBNQN/NSID"),
            ("nvme-tcp://h/n", "missing /NSID after the NQN"),
            ("nvme-tcp://h//1", "empty NQN"),
            ("nvme-tcp://h/n/x", "bad NSID \"x\" (1 to 4294967294)"),
            ("nvme-tcp://h/n/0", "bad NSID \"0\" (1 to 4294967294)"),
            ("nvme-tcp://:4420/n/1", "empty host"),
            ("nvme-tcp://h:0/n/1", "bad port \"0\" (1 to 65535)"),
            ("nvme-tcp://h:99999/n/1", "bad port \"99999\" (1 to 65535)"),
            ("nvme-tcp://[::1/n/1", "an IPv6 host needs its closing ]"),
            (
                "nvme-tcp://[h]/n/1",
                "\"h\" in brackets is not an IPv6 address",
            ),
            (
                "nvme-tcp://[::1]x/n/1",
                "\"x\" after the ] (expected :PORT)",
            ),
            (
                "nvme-tcp://::1/n/1",
                "an IPv6 host goes in brackets: [::1]:4420",
            ),
        ] {
            let e = NvmeTcpUrl::parse(u).unwrap_err();
            assert_eq!((e.url.as_str(), e.reason.as_str()), (u, why));
            assert_eq!(e.to_string(), format!("bad NVMe/TCP URL {u:?}: {why}"));
        }
    }
}
