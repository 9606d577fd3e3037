//! Bringing an association up, and down, over blocking sockets: the sans-IO steps of
//! [`crate::bringup`] (Connect, CC.EN and CSTS.RDY, Identify, Set Features Number of Queues,
//! I/O queue Connects; CC.SHN and CSTS.SHST) run by one loop ([`drive`]), shared by
//! [`Controller`](super::Controller)'s connect and every reconnect, and [`discover`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use ulp_ddp_core::{DdpBackend, NoOffload, QueueId, SgBuffer};

use super::{Connection, Error, timed_out};
use crate::bringup::{self, Action, AdminBringup, BringupError, IoQueueBringup, Shutdown, Steps};
use crate::connection::{Completion, ConnectionConfig, Data};
use crate::nvme::{self, ControllerInfo, NamespaceInfo};
use crate::options::Options;

/// The queues of one association.
#[derive(Debug)]
pub(super) struct Queues<B: DdpBackend> {
    pub(super) admin: Connection<B>,
    /// I/O queues 1..=n (index 0 is qid 1).
    pub(super) io: Vec<Connection<B>>,
    pub(super) info: ControllerInfo,
    pub(super) ns: NamespaceInfo,
    pub(super) cntlid: u16,
    pub(super) cap: u64,
    /// The outstanding Asynchronous Event Request's CID on the admin queue.
    pub(super) aer: Option<u16>,
}

/// `c` if it succeeded, else [`Error::Status`] naming `command`.
pub(super) fn check(command: &'static str, c: Completion) -> Result<Completion, Error> {
    if c.status.is_success() {
        Ok(c)
    } else {
        Err(Error::Status {
            command,
            cid: c.cid,
            status: c.status,
            buffer: c.buffer,
        })
    }
}

impl From<BringupError> for Error {
    fn from(e: BringupError) -> Self {
        match e {
            BringupError::Status {
                command,
                cid,
                status,
            } => Self::Status {
                command,
                cid,
                status,
                buffer: None,
            },
            BringupError::Timeout { waited, what } => timed_out(waited, what.into()),
            BringupError::Setup(s) => Self::Setup(s),
        }
    }
}

/// Runs sans-IO `steps` on `q` to their end: the blocking driver's loop over the shared
/// bring-up (each command submitted and waited for; between CSTS reads, a sleep until the
/// steps' next timer).
pub(super) fn drive<B: DdpBackend, S: Steps>(
    q: &mut Connection<B>,
    steps: &mut S,
) -> Result<S::Output, Error> {
    loop {
        match steps.next_action(Instant::now()) {
            Action::Submit(command) => {
                let c = q.run(command.sqe, command.data)?;
                steps.handle_completion(c);
            }
            Action::Sleep(wake) => {
                std::thread::sleep(wake.saturating_duration_since(Instant::now()));
            }
            Action::Done(result) => return result.map_err(Error::from),
        }
    }
}

/// A clean shutdown: CC.SHN = 01b, then CSTS.SHST polled for "complete" for at most `t`.
pub(super) fn shutdown<B: DdpBackend>(admin: &mut Connection<B>, t: Duration) -> Result<(), Error> {
    drive(admin, &mut Shutdown::new(t))
}

/// Connects an association: the admin queue (ICReq, Connect, CC.EN and CSTS.RDY, Identify
/// Controller and Namespace, checked), Set Features Number of Queues when more than one is
/// asked for, then each I/O queue (ICReq, Connect), and one Asynchronous Event Request. The
/// backend queue ids are `generation << 16 | qid`, so that the queues of a reconnect do not
/// clash with those of the association they replace while both exist.
pub(super) fn bring_up<B: DdpBackend>(
    addr: SocketAddr,
    options: &Options,
    backend: &mut dyn FnMut(QueueId) -> B,
    generation: u32,
) -> Result<Queues<B>, Error> {
    let queue_id = |qid: u16| QueueId((generation << 16) | u32::from(qid));
    let t = options.timeout;
    let admin_cfg = bringup::admin_config(options, queue_id(0));
    let tls = options.tls.as_ref();
    let mut admin = Connection::connect_tls(addr, backend(queue_id(0)), admin_cfg, t, tls)?;
    let found = drive(&mut admin, &mut AdminBringup::new(options))?;
    let mut io = Vec::with_capacity(usize::from(found.io_queues));
    for qid in 1..=found.io_queues {
        let depth = found.queue_depth;
        let io_cfg = bringup::io_config(options, queue_id(qid), qid, depth);
        let mut q = Connection::connect_tls(addr, backend(queue_id(qid)), io_cfg, t, tls)?;
        drive(
            &mut q,
            &mut IoQueueBringup::new(options, qid, depth, found.cntlid),
        )?;
        q.connection_mut()
            .set_in_capsule_limit(found.info.in_capsule_limit());
        if !options.io_timeout.is_zero() {
            // Up: command deadlines and Keep Alive decide from now on, not silence.
            q.set_silence_limit(None);
        }
        io.push(q);
    }
    // One Asynchronous Event Request kept outstanding, as Linux does (NVME_NR_AEN_COMMANDS);
    // it has no deadline: the controller completes it only when something happens.
    let aer = admin
        .connection_mut()
        .submit_untimed(nvme::async_event_request(), Data::None)
        .ok();
    admin.flush()?;
    Ok(Queues {
        admin,
        io,
        info: found.info,
        ns: found.ns,
        cntlid: found.cntlid,
        cap: found.cap,
        aer,
    })
}

/// Reads the Discovery Log Page of the discovery controller at `addr`: an admin queue
/// connected to [`nvme::DISCOVERY_NQN`] (no keep-alive, as Linux's one-shot `nvme discover`),
/// enabled (CC.EN, CSTS.RDY), the log read as the specification asks
/// ([`LogReader`](crate::discovery::LogReader): header, page, header again until the
/// generation counter holds still), then a clean shutdown (best effort).
///
/// # Errors
///
/// Any step's failure; a log that does not parse, in words.
pub fn discover(
    addr: impl ToSocketAddrs,
    options: &Options,
) -> Result<crate::discovery::DiscoveryLog, Error> {
    use crate::discovery::{LogReader, ReadStep};
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| Error::Setup("the address resolves to nothing".into()))?;
    let t = options.timeout;
    let cfg = ConnectionConfig::admin(QueueId(0), options.digests)
        .with_command_timeout(Some(options.admin_timeout));
    let mut admin = Connection::connect_tls(addr, NoOffload, cfg, t, options.tls.as_ref())?;
    drive(&mut admin, &mut AdminBringup::discovery(options))?;
    let mut reader = LogReader::new(1024);
    let mut step = reader.start();
    let log = loop {
        match step {
            ReadStep::Read { len, .. } => {
                let sqe = step
                    .command()
                    .ok_or_else(|| Error::Setup("discovery log: no command to send".into()))?;
                let c = admin.run(sqe, Data::Read(SgBuffer::zeroed(len as usize)))?;
                let page = check("Get Log Page (discovery)", c)?
                    .buffer
                    .map(SgBuffer::into_vec)
                    .unwrap_or_default();
                step = reader
                    .feed(&page)
                    .map_err(|e| Error::Setup(format!("discovery log: {e}")))?;
            }
            ReadStep::Done(log) => break log,
        }
    };
    // Best effort: the log is read; a controller slow to shut down changes nothing for the
    // caller.
    let _ = shutdown(&mut admin, t);
    Ok(log)
}
