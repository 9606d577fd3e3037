//! Discovery and asynchronous events against the embedded target, driven one queue at a time
//! with `blocking::Connection`: the discovery controller (Identify, the Discovery Log Page read
//! header / page / header, offsets and lengths, refusals), then connecting to what it lists;
//! and Asynchronous Event Requests held by the target until a namespace changes.

use std::time::{Duration, Instant};

use ulp_ddp_core::QueueId;
use ulp_nvme_tcp::blocking::{Connection, Controller, Options};
use ulp_nvme_tcp::discovery::{
    AddressFamily, DiscoveryLog, LogReader, ReadStep, SubsystemType, TcpSecurity, TransportType,
};
use ulp_nvme_tcp::nvme::{self, AsyncEvent, ControllerInfo};
use ulp_nvme_tcp::wire::Digests;
use ulp_nvme_tcp::{Completion, ConnectionConfig, Data, NoOffload, SgBuffer, Status};
use ulp_testbed::nvme::{Target, TargetConfig};

const TIMEOUT: Duration = Duration::from_secs(10);
const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001";
const HOSTID: [u8; 16] = [1; 16];

/// An admin queue connected to `subnqn` and enabled: ICReq, Connect, CC.EN. Its CNTLID too.
fn admin(target: &Target, subnqn: &str, digests: Digests) -> (Connection, u16) {
    let config = ConnectionConfig::admin(QueueId(0), digests);
    let mut c = Connection::connect(target.addr(), NoOffload, config, TIMEOUT).expect("ICReq");
    let data = nvme::connect_data(HOSTID, 0xFFFF, subnqn, HOSTNQN);
    let done = c
        .run(
            nvme::connect(0, 32, 0, 0),
            Data::Write(SgBuffer::from_vec(data)),
        )
        .expect("Connect");
    assert_eq!(done.status, Status::SUCCESS, "admin Connect to {subnqn}");
    let cntlid = done.result as u16;
    let done = c
        .run(
            nvme::property_set(nvme::REG_CC, nvme::CC_ENABLE),
            Data::None,
        )
        .expect("Property Set");
    assert!(done.status.is_success());
    (c, cntlid)
}

/// Runs a command that reads `len` bytes: its data, or its status when it failed.
fn read(c: &mut Connection, sqe: [u8; 64], len: usize) -> Result<Vec<u8>, Completion> {
    let done = c
        .run(sqe, Data::Read(SgBuffer::zeroed(len)))
        .expect("command");
    if done.status.is_success() {
        Ok(done.buffer.map(SgBuffer::into_vec).unwrap_or_default())
    } else {
        Err(done)
    }
}

/// The Discovery Log Page, read as the specification asks (header, page, header).
fn discovery_log(c: &mut Connection) -> (DiscoveryLog, Vec<(u64, u32)>) {
    let mut reader = LogReader::new(64);
    let mut step = reader.start();
    let mut reads = Vec::new();
    loop {
        match step {
            ReadStep::Read { offset, len } => {
                reads.push((offset, len));
                let sqe = step.command().expect("a read step has a command");
                let data = read(c, sqe, len as usize).expect("Get Log Page");
                step = reader.feed(&data).expect("a valid discovery log");
            }
            ReadStep::Done(log) => return (log, reads),
        }
    }
}

fn status_name(c: &Completion, command: &str) -> String {
    c.status.describe(command).to_string()
}

fn discover(digests: Digests) {
    let target = Target::start(TargetConfig::default()).expect("target");
    let (mut c, cntlid) = admin(&target, nvme::DISCOVERY_NQN, digests);

    // A discovery controller, by Identify.
    let id = read(&mut c, nvme::identify(nvme::CNS_CONTROLLER, 0), 4096).expect("Identify");
    let info = ControllerInfo::parse(&id);
    assert_eq!(info.cntrltype, nvme::CNTRLTYPE_DISCOVERY);
    assert_eq!(info.subnqn, nvme::DISCOVERY_NQN);
    assert_eq!(
        (info.cntlid, info.nn, info.aerl, info.oaes),
        (cntlid, 0, 3, 0)
    );
    assert_eq!(info.lpa & 4, 4, "offsets in Get Log Page");
    // It has no namespaces.
    let err = read(&mut c, nvme::identify(nvme::CNS_NAMESPACE, 1), 4096).unwrap_err();
    assert_eq!(err.status.sc, nvme::SC_INVALID_FIELD as u8);

    // The log: header, the whole page, header again.
    let (log, reads) = discovery_log(&mut c);
    assert_eq!(reads, [(0, 20), (0, 2048), (0, 20)]);
    assert_eq!((log.genctr, log.entries.len()), (0, 1));
    let e = &log.entries[0];
    let addr = target.addr();
    assert_eq!(
        (e.trtype, e.adrfam, e.subtype),
        (TransportType::Tcp, AddressFamily::Ipv4, SubsystemType::Nvm)
    );
    assert_eq!((e.portid, e.cntlid, e.asqsz, e.eflags), (1, 0xFFFF, 32, 0));
    assert_eq!(e.traddr, addr.ip().to_string());
    assert_eq!(e.trsvcid, addr.port().to_string());
    assert_eq!(e.subnqn, target.subnqn());
    assert_eq!(e.tcp_security(), TcpSecurity::None);
    assert_eq!(
        log.to_string(),
        format!(
            "\nDiscovery Log Number of Records 1, Generation counter 0\n\
             =====Discovery Log Entry 0======\n\
             trtype:  tcp\n\
             adrfam:  ipv4\n\
             subtype: nvme subsystem\n\
             treq:    not specified\n\
             portid:  1\n\
             trsvcid: {}\n\
             subnqn:  {}\n\
             traddr:  127.0.0.1\n\
             eflags:  none\n\
             sectype: none\n",
            addr.port(),
            target.subnqn()
        )
    );

    // Offsets and lengths are honoured; past the end reads zeros.
    let whole = read(
        &mut c,
        nvme::get_log_page(nvme::LID_DISCOVERY, 0, 2048, 0),
        2048,
    )
    .expect("the whole page");
    assert_eq!(DiscoveryLog::parse(&whole).expect("parse"), log);
    let entry = read(
        &mut c,
        nvme::get_log_page(nvme::LID_DISCOVERY, 0, 1024, 1024),
        1024,
    )
    .expect("the entry alone");
    assert_eq!(entry, whole[1024..]);
    let part = read(
        &mut c,
        nvme::get_log_page(nvme::LID_DISCOVERY, 0, 64, 1056),
        64,
    )
    .expect("TRSVCID");
    assert_eq!(part[..32], whole[1056..1088]);
    assert!(part[32..].iter().all(|&b| b == 0), "reserved bytes");
    let tail = read(
        &mut c,
        nvme::get_log_page(nvme::LID_DISCOVERY, 0, 512, 2048 - 256),
        512,
    )
    .expect("across the end");
    assert_eq!(tail[..256], whole[2048 - 256..]);
    assert!(tail[256..].iter().all(|&b| b == 0), "zeros past the end");
    // Refusals, in words.
    let err = read(
        &mut c,
        nvme::get_log_page(nvme::LID_DISCOVERY, 0, 64, 2),
        64,
    )
    .unwrap_err();
    assert_eq!(
        status_name(&err, "Get Log Page"),
        "Invalid Field in Command (SCT 0h SC 02h DNR)"
    );
    let err = read(
        &mut c,
        nvme::get_log_page(nvme::LID_DISCOVERY, 0, 64, 4096),
        64,
    )
    .unwrap_err();
    assert_eq!(
        err.status.sc,
        nvme::SC_INVALID_FIELD as u8,
        "offset past the end"
    );
    let err = read(
        &mut c,
        nvme::get_log_page(nvme::LID_CHANGED_NS_LIST, 0, 4096, 0),
        4096,
    )
    .unwrap_err();
    assert_eq!(
        status_name(&err, "Get Log Page"),
        "Invalid Log Page (SCT 1h SC 09h DNR)"
    );
    // No asynchronous events to enable on a discovery controller (its log never changes).
    let done = c
        .run(
            nvme::set_async_event_config(nvme::AEC_DISCOVERY_LOG_CHANGE),
            Data::None,
        )
        .expect("Set Features");
    assert_eq!(done.status.sc, nvme::SC_INVALID_FIELD as u8);

    // No I/O queue on a discovery controller.
    let io_config = ConnectionConfig::io(QueueId(1), 1, 8, digests);
    let mut io = Connection::connect(target.addr(), NoOffload, io_config, TIMEOUT).expect("ICReq");
    let data = nvme::connect_data(HOSTID, cntlid, nvme::DISCOVERY_NQN, HOSTNQN);
    let done = io
        .run(
            nvme::connect(1, 8, 0, 0),
            Data::Write(SgBuffer::from_vec(data)),
        )
        .expect("I/O Connect");
    assert_eq!(
        status_name(&done, "Connect"),
        "Connect Invalid Parameters (SCT 1h SC 82h DNR)"
    );
    assert_eq!(done.result, 42, "IATTR 0, IPO: the QID field of the SQE");
    drop(io);

    // What discovery found is what a host connects to.
    let e = log.entries[0].clone();
    let mut options = Options::new(&e.subnqn);
    options.digests = digests;
    options.timeout = TIMEOUT;
    let mut ctrl = Controller::connect(format!("{}:{}", e.traddr, e.trsvcid), &options)
        .expect("connect to the discovered subsystem");
    assert_eq!(ctrl.info().cntrltype, nvme::CNTRLTYPE_IO);
    assert_eq!(ctrl.info().subnqn, target.subnqn());
    ctrl.write(0, SgBuffer::from_vec(vec![0x5A; 4096]))
        .expect("write");
    let back = ctrl.read(0, SgBuffer::zeroed(4096)).expect("read");
    assert_eq!(back.into_vec(), vec![0x5A; 4096]);
    // The discovery controller is still there.
    let (again, _) = discovery_log(&mut c);
    assert_eq!(again, log);
    assert!(target.violations().is_empty(), "{:?}", target.violations());
}

#[test]
fn discovery_log_digests_off() {
    discover(Digests::NONE);
}

#[test]
fn discovery_log_digests_on() {
    discover(Digests {
        header: true,
        data: true,
    });
}

/// Waits until the target holds `n` Asynchronous Event Requests.
fn held(target: &Target, n: usize) {
    let deadline = Instant::now() + TIMEOUT;
    while target.async_event_requests() != n {
        assert!(
            Instant::now() < deadline,
            "the target holds {} requests, not {n}",
            target.async_event_requests()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn async_event_on_namespace_change() {
    let target = Target::start(TargetConfig::default()).expect("target");
    let (mut c, cntlid) = admin(&target, target.subnqn(), Digests::NONE);
    let info = ControllerInfo::parse(
        &read(&mut c, nvme::identify(nvme::CNS_CONTROLLER, 0), 4096).expect("Identify"),
    );
    assert_eq!(
        (info.cntrltype, info.cntlid, info.aerl),
        (nvme::CNTRLTYPE_IO, cntlid, 3)
    );
    assert_ne!(info.oaes & nvme::AEC_NAMESPACE_ATTRIBUTE, 0);

    // The request stays outstanding while other commands come and go.
    let aer = c
        .submit(nvme::async_event_request(), Data::None)
        .expect("AER");
    c.flush().expect("send");
    held(&target, 1);
    let done = c.run(nvme::keep_alive(), Data::None).expect("Keep Alive");
    assert!(done.status.is_success());
    assert_eq!(c.connection().outstanding(), 1, "only the AER");

    // A namespace changes: the request completes with the notice.
    assert_eq!(target.notify_namespace_changed(), 1);
    let done = c.wait(aer).expect("the AER completes");
    assert!(done.status.is_success());
    let event = AsyncEvent::from_dw0(done.result as u32);
    assert_eq!(event, AsyncEvent::NAMESPACE_ATTRIBUTE_CHANGED);
    assert_eq!(
        event.to_string(),
        "Notice: Namespace Attribute Changed (log page 04h)"
    );

    // Masked until the host reads log page 04h: another change reports nothing.
    let aer = c
        .submit(nvme::async_event_request(), Data::None)
        .expect("AER");
    c.flush().expect("send");
    held(&target, 1);
    assert_eq!(target.notify_namespace_changed(), 0, "masked");
    let list = read(
        &mut c,
        nvme::get_log_page(nvme::LID_CHANGED_NS_LIST, 0xFFFF_FFFF, 4096, 0),
        4096,
    )
    .expect("Changed Namespace List");
    assert_eq!(list[..4], 1u32.to_le_bytes(), "namespace 1 changed");
    assert!(list[4..].iter().all(|&b| b == 0));
    // Read (without RAE): the list is empty again and the notice re-armed.
    assert_eq!(target.notify_namespace_changed(), 1);
    let done = c.wait(aer).expect("the AER completes");
    assert_eq!(
        AsyncEvent::from_dw0(done.result as u32),
        AsyncEvent::NAMESPACE_ATTRIBUTE_CHANGED
    );

    // An event with no request outstanding waits for the next one, which completes at once.
    read(
        &mut c,
        nvme::get_log_page(nvme::LID_CHANGED_NS_LIST, 0xFFFF_FFFF, 4096, 0),
        4096,
    )
    .expect("Changed Namespace List");
    assert_eq!(target.notify_namespace_changed(), 1);
    let done = c.run(nvme::async_event_request(), Data::None).expect("AER");
    assert_eq!(
        AsyncEvent::from_dw0(done.result as u32),
        AsyncEvent::NAMESPACE_ATTRIBUTE_CHANGED
    );
    held(&target, 0);

    // Disabled by Set Features: nothing is reported.
    read(
        &mut c,
        nvme::get_log_page(nvme::LID_CHANGED_NS_LIST, 0xFFFF_FFFF, 4096, 0),
        4096,
    )
    .expect("Changed Namespace List");
    let done = c
        .run(nvme::set_async_event_config(0), Data::None)
        .expect("Set Features");
    assert!(done.status.is_success());
    assert_eq!(target.notify_namespace_changed(), 0, "disabled");
    let done = c
        .run(
            nvme::set_async_event_config(nvme::AEC_DISCOVERY_LOG_CHANGE),
            Data::None,
        )
        .expect("Set Features");
    assert_eq!(
        status_name(&done, "Set Features"),
        "Invalid Field in Command (SCT 0h SC 02h DNR)"
    );
    assert!(target.violations().is_empty(), "{:?}", target.violations());
}

#[test]
fn async_event_request_limit() {
    let target = Target::start(TargetConfig {
        capture: true,
        ..TargetConfig::default()
    })
    .expect("target");
    let (mut c, _) = admin(&target, target.subnqn(), Digests::NONE);
    let aers: Vec<u16> = (0..4)
        .map(|_| {
            c.submit(nvme::async_event_request(), Data::None)
                .expect("AER")
        })
        .collect();
    c.flush().expect("send");
    held(&target, 4);
    // AERL 3: a fifth is refused.
    let done = c
        .run(nvme::async_event_request(), Data::None)
        .expect("fifth AER");
    assert_eq!(
        status_name(&done, "Asynchronous Event Request"),
        "Asynchronous Event Request Limit Exceeded (SCT 1h SC 05h DNR)"
    );
    // The oldest completes first.
    assert_eq!(target.notify_namespace_changed(), 1);
    let done = c.next_completion().expect("a completion");
    assert_eq!(done.cid, aers[0]);
    assert!(done.status.is_success());
    // The capture holds the completion sent from outside the connection's thread: a
    // CapsuleResp (type 05h) whose CQE (from byte 8) carries its CID (CQE bytes 12..14).
    let cid = aers[0].to_le_bytes();
    assert!(
        target
            .capture()
            .iter()
            .any(|p| !p.from_host && p.bytes[0] == 0x05 && p.bytes[20..22] == cid),
        "the AER's completion is captured"
    );
    // The requests go with their connection.
    drop(c);
    held(&target, 0);
    assert!(target.violations().is_empty(), "{:?}", target.violations());
}
