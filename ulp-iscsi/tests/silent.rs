//! A target that stops answering: the blocking session gives up at its timeout with an error
//! that says what it waited for and how long; it never hangs.

use std::io::Read;
use std::time::{Duration, Instant};

use ulp_iscsi::ConnectionConfig;
use ulp_iscsi::blocking::{Error, Options, Session};
use ulp_testbed::scripted::ScriptedPeer;

#[test]
fn a_target_that_never_answers_the_login_is_a_timeout_in_words() {
    let peer = ScriptedPeer::start(|s| {
        let mut bhs = [0u8; 48];
        s.read_exact(&mut bhs).expect("Login Request");
        assert_eq!(bhs[0] & 0x3F, 0x03, "a Login Request opens the session");
    });
    let mut options = Options::default();
    options.timeout = Duration::from_millis(400);
    let config =
        ConnectionConfig::normal("iqn.2024-01.io.example:host", "iqn.2024-01.io.example:t");
    let t = Instant::now();
    let err = Session::connect(peer.addr(), config, options).unwrap_err();
    let waited = t.elapsed();
    peer.finish();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "no answer from the target in 0.4 s while waiting for the Login Response"
    );
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}
