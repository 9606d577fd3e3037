//! [`ScriptedPeer`]: a peer that follows a script instead of a protocol, for silent and
//! hostile-peer tests: it accepts one connection on 127.0.0.1, runs the script on it, then
//! holds the socket open (neither reading nor writing) until the test lets it go.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a peer holds its socket after its script if the test never lets it go.
const HOLD_AT_MOST: Duration = Duration::from_secs(10);

/// A scripted peer on 127.0.0.1 (see the module docs). Dropping it lets it close its socket.
#[derive(Debug)]
pub struct ScriptedPeer {
    addr: SocketAddr,
    release: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedPeer {
    /// Listens on a free port of 127.0.0.1 and, in a thread, accepts one connection and runs
    /// `script` on it.
    ///
    /// # Panics
    ///
    /// If no port can be bound.
    pub fn start(script: impl FnOnce(&mut TcpStream) + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (release, released) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            script(&mut socket);
            let _ = released.recv_timeout(HOLD_AT_MOST);
        });
        Self {
            addr,
            release: Some(release),
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Lets the peer close its socket and waits for its thread.
    ///
    /// # Panics
    ///
    /// With the script's panic, if it panicked (an assertion on what the peer received).
    pub fn finish(mut self) {
        if let Some(Err(panic)) = self.stop() {
            std::panic::resume_unwind(panic);
        }
    }

    fn stop(&mut self) -> Option<std::thread::Result<()>> {
        drop(self.release.take());
        self.thread.take().map(JoinHandle::join)
    }
}

impl Drop for ScriptedPeer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
