//! Bringing an association up, and down: the steps [`Controller`](super::Controller)'s connect
//! and every reconnect share, and [`discover`] reuses (Connect, CC.EN and CSTS.RDY, Identify,
//! Set Features Number of Queues, I/O queue Connects; CC.SHN and CSTS.SHST).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use ulp_ddp_core::{DdpBackend, NoOffload, QueueId, SgBuffer};

use super::types::Options;
use super::{Connection, Error, timed_out};
use crate::connection::{Completion, ConnectionConfig, Data};
use crate::nvme::{self, ControllerInfo, NamespaceInfo};

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

/// Runs a command without data on `admin` and checks its status; returns its result.
fn run_ok<B: DdpBackend>(
    admin: &mut Connection<B>,
    command: &'static str,
    sqe: [u8; 64],
) -> Result<u64, Error> {
    let c = admin.run(sqe, Data::None)?;
    Ok(check(command, c)?.result)
}

fn identify<B: DdpBackend>(
    admin: &mut Connection<B>,
    cns: u8,
    nsid: u32,
) -> Result<Vec<u8>, Error> {
    let c = admin.run(
        nvme::identify(cns, nsid),
        Data::Read(SgBuffer::zeroed(nvme::IDENTIFY_LEN)),
    )?;
    let c = check("Identify", c)?;
    Ok(c.buffer.map(SgBuffer::into_vec).unwrap_or_default())
}

/// Fabrics Connect of queue `qid` to `subnqn`; returns the controller id.
fn connect_queue<B: DdpBackend>(
    q: &mut Connection<B>,
    options: &Options,
    subnqn: &str,
    (qid, depth, kato_ms, cntlid): (u16, u16, u32, u16),
) -> Result<u16, Error> {
    let data = nvme::connect_data(host_id(&options.hostnqn), cntlid, subnqn, &options.hostnqn);
    let c = q.run(
        nvme::connect(qid, depth, kato_ms, 0),
        Data::Write(SgBuffer::from_vec(data)),
    )?;
    let what = if qid == 0 {
        "admin Connect"
    } else {
        "I/O Connect"
    };
    Ok(check(what, c)?.result as u16)
}

/// Sets CC to `cc`, then polls CSTS for at most `t` until `done` says so (`Err` ends it).
fn set_cc_and_wait<B: DdpBackend>(
    admin: &mut Connection<B>,
    (command, cc): (&'static str, u32),
    t: Duration,
    waited_for: &str,
    done: impl Fn(u64) -> Result<bool, Error>,
) -> Result<(), Error> {
    run_ok(admin, command, nvme::property_set(nvme::REG_CC, cc))?;
    let deadline = Instant::now() + t;
    loop {
        let csts = run_ok(
            admin,
            "Property Get CSTS",
            nvme::property_get(nvme::REG_CSTS, false),
        )?;
        if done(csts)? {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(timed_out(t, waited_for.into()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// CC.EN, then CSTS.RDY polled for at most `t` (CSTS.CFS is an error).
fn enable<B: DdpBackend>(admin: &mut Connection<B>, t: Duration) -> Result<(), Error> {
    set_cc_and_wait(
        admin,
        ("Property Set CC", nvme::CC_ENABLE),
        t,
        "CSTS.RDY after setting CC.EN",
        |csts| {
            if csts & 2 != 0 {
                return Err(Error::Setup(
                    "the controller reports a fatal status (CSTS.CFS) after enabling".into(),
                ));
            }
            Ok(csts & 1 != 0)
        },
    )
}

/// A clean shutdown: CC.SHN = 01b, then CSTS.SHST polled for "complete" for at most `t`.
pub(super) fn shutdown<B: DdpBackend>(admin: &mut Connection<B>, t: Duration) -> Result<(), Error> {
    set_cc_and_wait(
        admin,
        ("Property Set CC (shutdown)", nvme::CC_SHUTDOWN),
        t,
        "CSTS.SHST to report shutdown complete after CC.SHN",
        |csts| Ok(csts & nvme::CSTS_SHST_MASK == nvme::CSTS_SHST_COMPLETE),
    )
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
    let kato_ms = u32::try_from(options.kato.as_millis()).unwrap_or(u32::MAX);
    let admin_cfg = ConnectionConfig::admin(queue_id(0), options.digests)
        .with_keep_alive((kato_ms > 0).then(|| options.kato / 2))
        .with_command_timeout(Some(options.admin_timeout));
    let mut admin = Connection::connect(addr, backend(queue_id(0)), admin_cfg, t)?;
    let cntlid = connect_queue(
        &mut admin,
        options,
        &options.subnqn,
        (0, 32, kato_ms, 0xFFFF),
    )?;
    let cap = run_ok(
        &mut admin,
        "Property Get CAP",
        nvme::property_get(nvme::REG_CAP, true),
    )?;
    let mqes = (cap & 0xFFFF) as u16;
    enable(&mut admin, t)?;
    let info = ControllerInfo::parse(&identify(&mut admin, nvme::CNS_CONTROLLER, 0)?);
    let ns = NamespaceInfo::check(&identify(&mut admin, nvme::CNS_NAMESPACE, options.nsid)?)
        .map_err(|e| Error::Setup(format!("namespace {}: {e}", options.nsid)))?;
    let depth = options.queue_depth.clamp(2, mqes.saturating_add(1).max(2));
    let mut queues = options.queues.max(1);
    if queues > 1 {
        // Set Features, Number of Queues (FID 07h): 0's based NSQR and NCQR; the controller
        // answers with what it allocates.
        let mut sqe = nvme::set_features(nvme::FID_NUMBER_OF_QUEUES);
        let want = u32::from(queues - 1);
        sqe[44..48].copy_from_slice(&(want | (want << 16)).to_le_bytes());
        let granted = run_ok(&mut admin, "Set Features (Number of Queues)", sqe)?;
        let nsqa = (granted & 0xFFFF) as u16;
        let ncqa = ((granted >> 16) & 0xFFFF) as u16;
        queues = queues.min(nsqa.min(ncqa).saturating_add(1));
    }
    let mut io = Vec::with_capacity(usize::from(queues));
    for qid in 1..=queues {
        let io_cfg = ConnectionConfig::io(queue_id(qid), qid, depth, options.digests)
            .with_command_timeout((!options.io_timeout.is_zero()).then_some(options.io_timeout));
        let mut q = Connection::connect(addr, backend(queue_id(qid)), io_cfg, t)?;
        connect_queue(&mut q, options, &options.subnqn, (qid, depth, 0, cntlid))?;
        q.connection_mut()
            .set_in_capsule_limit(info.in_capsule_limit());
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
        info,
        ns,
        cntlid,
        cap,
        aer,
    })
}

/// A stable host identifier derived from the host NQN (the same on every reconnect).
fn host_id(hostnqn: &str) -> [u8; 16] {
    let a = ulp_ddp_core::digest::crc32c(hostnqn.as_bytes());
    let b = ulp_ddp_core::digest::crc32c(&a.to_le_bytes());
    let mut id = [0u8; 16];
    for (i, chunk) in id.chunks_mut(4).enumerate() {
        chunk.copy_from_slice(&(a ^ b.rotate_left(i as u32 * 8)).to_le_bytes());
    }
    id
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
    let mut admin = Connection::connect(addr, NoOffload, cfg, t)?;
    connect_queue(&mut admin, options, nvme::DISCOVERY_NQN, (0, 32, 0, 0xFFFF))?;
    enable(&mut admin, t)?;
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
