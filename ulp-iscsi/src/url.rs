//! libiscsi's URL form: `iscsi://[user[%password]@]host[:port]/target-iqn/lun`.

use core::fmt;

/// A parsed iSCSI URL.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct IscsiUrl {
    /// Host name or address.
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

/// Why a URL did not parse.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct UrlError(pub &'static str);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad iSCSI URL: {}", self.0)
    }
}

impl std::error::Error for UrlError {}

impl IscsiUrl {
    /// Parses `s`.
    ///
    /// # Errors
    ///
    /// [`UrlError`] naming the part that is wrong.
    ///
    /// ```
    /// let u = ulp_iscsi::url::IscsiUrl::parse("iscsi://u%p@127.0.0.1:3261/iqn.x:t/1").unwrap();
    /// assert_eq!((u.port, u.lun, u.target.as_str()), (3261, 1, "iqn.x:t"));
    /// ```
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let rest = s
            .strip_prefix("iscsi://")
            .ok_or(UrlError("must start with iscsi://"))?;
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
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| UrlError("bad port"))?),
            None => (hostport, 3260),
        };
        if host.is_empty() {
            return Err(UrlError("missing host"));
        }
        let (target, lun) = match path.trim_end_matches('/').rsplit_once('/') {
            Some((t, l)) => (t, l.parse().map_err(|_| UrlError("bad LUN"))?),
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

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
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
}
