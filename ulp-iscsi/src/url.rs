//! libiscsi's URL form: `iscsi://[user[%password]@]host[:port]/target-iqn/lun`, the host a
//! name, an IPv4 address or an IPv6 address in brackets (`iscsi://[fce0::1]:3260/...`).

use core::fmt;

/// A parsed iSCSI URL.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct IscsiUrl {
    /// Host name or address; an IPv6 address without its URL brackets (`::1`).
    pub host: String,
    /// TCP port (default 3260).
    pub port: u16,
    /// Target IQN (empty for a portal-only URL, used for discovery).
    pub target: String,
    /// LUN (0 when absent).
    pub lun: u16,
    /// CHAP user, if given.
    pub user: Option<String>,
    /// CHAP secret, if given.
    pub password: Option<String>,
}

/// Why a URL did not parse: the URL and the part that is wrong.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct UrlError {
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad iSCSI URL {:?}: {}", self.url, self.reason)
    }
}

impl std::error::Error for UrlError {}

impl IscsiUrl {
    /// Parses `s`.
    ///
    /// # Errors
    ///
    /// [`UrlError`] quoting the URL and naming the part that is wrong.
    ///
    /// ```
    /// let u = ulp_iscsi::url::IscsiUrl::parse("iscsi://u%p@127.0.0.1:3261/iqn.x:t/1").unwrap();
    /// assert_eq!((u.port, u.lun, u.target.as_str()), (3261, 1, "iqn.x:t"));
    /// let u = ulp_iscsi::url::IscsiUrl::parse("iscsi://[::1]/iqn.x:t/0").unwrap();
    /// assert_eq!((u.host.as_str(), u.port, u.addr()), ("::1", 3260, "[::1]:3260".into()));
    /// ```
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let e = |reason| UrlError {
            url: s.to_string(),
            reason,
        };
        let rest = s
            .strip_prefix("iscsi://")
            .ok_or_else(|| e("must start with iscsi://"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (creds, hostport) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let (user, password) = match creds {
            Some(c) => match c.split_once('%') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(c.to_string()), None),
            },
            None => (None, None),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| e("an IPv6 host needs its closing ]"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(e("the host in brackets is not an IPv6 address"));
            }
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| e("after the IPv6 host's ] comes :PORT or /"))?,
                ),
            };
            (h, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.contains(':') && !hostport.starts_with('[') {
            return Err(e("an IPv6 host goes in brackets: [::1]:3260"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| e("bad port"))?,
            None => 3260,
        };
        if host.is_empty() {
            return Err(e("missing host"));
        }
        let (target, lun) = match path.trim_end_matches('/').rsplit_once('/') {
            Some((t, l)) => (t, l.parse().map_err(|_| e("bad LUN"))?),
            None => (path.trim_end_matches('/'), 0),
        };
        Ok(Self {
            host: host.to_string(),
            port,
            target: target.to_string(),
            lun,
            user,
            password,
        })
    }

    /// `host:port`, an IPv6 host in brackets (`[::1]:3260`), as
    /// [`ToSocketAddrs`](std::net::ToSocketAddrs) and SendTargets' TargetAddress take it.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let u = IscsiUrl::parse("iscsi://10.0.0.1/iqn.2024-01.a:b/3").unwrap();
        assert_eq!(u.port, 3260);
        assert_eq!(u.lun, 3);
        assert_eq!(u.addr(), "10.0.0.1:3260");
        let u = IscsiUrl::parse("iscsi://h:1").unwrap();
        assert_eq!((u.target.as_str(), u.lun), ("", 0));
        let u = IscsiUrl::parse("iscsi://user@h:1/t/0").unwrap();
        assert_eq!(u.user.as_deref(), Some("user"));
        assert!(u.password.is_none());
        assert!(IscsiUrl::parse("http://h/t/0").is_err());
        assert!(IscsiUrl::parse("iscsi://h:x/t/0").is_err());
        assert!(IscsiUrl::parse("iscsi://h/t/x").is_err());
        assert!(IscsiUrl::parse("iscsi:///t/0").is_err());
    }

    #[test]
    fn ipv6_hosts_in_brackets() {
        let u = IscsiUrl::parse("iscsi://[::1]:3261/iqn.2024-01.a:b/2").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.lun), ("::1", 3261, 2));
        assert_eq!(u.target, "iqn.2024-01.a:b");
        assert_eq!(u.addr(), "[::1]:3261");
        let u = IscsiUrl::parse("iscsi://[::1]/iqn.2024-01.a:b/0").unwrap();
        assert_eq!((u.port, u.addr().as_str()), (3260, "[::1]:3260"));
        let u = IscsiUrl::parse("iscsi://[fe80::1:2]").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("fe80::1:2", 3260, "")
        );
        let u = IscsiUrl::parse("iscsi://user%pw@[fce0::1]:3262/t/1").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.password.as_deref(), u.addr().as_str()),
            (Some("user"), Some("pw"), "[fce0::1]:3262")
        );
        // Every way it can be wrong says so, quoting the URL.
        for (url, reason) in [
            ("iscsi://[::1/t/0", "an IPv6 host needs its closing ]"),
            (
                "iscsi://[]:3260/t/0",
                "the host in brackets is not an IPv6 address",
            ),
            (
                "iscsi://[host]/t/0",
                "the host in brackets is not an IPv6 address",
            ),
            (
                "iscsi://[::1]3260/t/0",
                "after the IPv6 host's ] comes :PORT or /",
            ),
            ("iscsi://[::1]:/t/0", "bad port"),
            ("iscsi://[::1]:70000/t/0", "bad port"),
            (
                "iscsi://::1/t/0",
                "an IPv6 host goes in brackets: [::1]:3260",
            ),
        ] {
            let e = IscsiUrl::parse(url).unwrap_err();
            assert_eq!(e.reason, reason, "{url}");
            assert_eq!(e.to_string(), format!("bad iSCSI URL {url:?}: {reason}"));
        }
        // An IPv4 or name host is unchanged.
        assert_eq!(IscsiUrl::parse("iscsi://h").unwrap().addr(), "h:3260");
    }
}
