//! Starting and stopping an engine: listeners, the mailbox mesh, one pinned thread per
//! shard, and the shutdown handshake.

use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::affinity::{allowed_cores, pin_current_thread};
use crate::handler::{Handler, ShardInfo};
use crate::mailbox::{mesh, Mailboxes, Parking};
use crate::shard::{Envelope, Shard};
use crate::sys::{wake_rings, BufRing, Features, Kind, Ring, Token};
use crate::{EngineConfig, EngineError};

/// State every shard can see. Only counters and flags: data never crosses cores here.
pub(crate) struct Shared {
    pub shutdown: AtomicBool,
    pub connections: AtomicUsize,
    /// Connections accepted on the extra listeners (counted apart: they have their own
    /// limit, so they can never use up `max_connections`).
    pub extra_connections: AtomicUsize,
    pub drained: AtomicUsize,
    pub exited: AtomicUsize,
    pub parking: Vec<Parking>,
    pub ring_fds: OnceLock<Vec<RawFd>>,
}

/// Wakes shards from a thread that is not a shard, through its own persistent io_uring
/// (MSG_RING). Publish first (an atomic store), then call [`RemoteWaker::wake`]: a shard
/// that is about to sleep either sees the published value in [`Handler::needs_turn`] or
/// gets the wake-up (the same park/check handshake shards use among themselves), so no
/// update is ever slept through; a shard that is busy is not woken at all.
///
/// [`Handler::needs_turn`]: crate::Handler::needs_turn
pub struct RemoteWaker {
    shared: Arc<Shared>,
    ring: std::sync::Mutex<crate::sys::WakeRing>,
}

impl RemoteWaker {
    /// Make sure shard `shard` runs a loop turn soon (a no-op if it is awake).
    pub fn wake(&self, shard: usize) {
        let Some(parking) = self.shared.parking.get(shard) else {
            return;
        };
        if !parking.needs_wake() {
            return;
        }
        let Some(fd) = self
            .shared
            .ring_fds
            .get()
            .and_then(|fds| fds.get(shard).copied())
        else {
            return;
        };
        let mut ring = match self.ring.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        // The parked flag is already cleared: a lost wake-up would leave the shard asleep
        // with news waiting, so try again before giving up.
        let mut last = None;
        for _ in 0..3 {
            match ring.wake(fd, Token::simple(Kind::Wake)) {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            tracing::warn!("could not wake shard {shard}: {e}");
        }
    }
}

/// A running engine.
pub struct EngineHandle {
    local_addr: Option<SocketAddr>,
    extra_addrs: Vec<SocketAddr>,
    features: Features,
    cores: Vec<Option<usize>>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Result<(), EngineError>>>,
}

impl EngineHandle {
    /// The address the shards listen on (with the real port when port 0 was asked for), or
    /// `None` for an engine without listeners.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The addresses of [`EngineConfig::extra_listen`], in order, with the real ports.
    pub fn extra_addrs(&self) -> &[SocketAddr] {
        &self.extra_addrs
    }

    /// The io_uring features shard 0 found.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The core each shard is pinned to (`None`: not pinned).
    pub fn cores(&self) -> &[Option<usize>] {
        &self.cores
    }

    /// Ask every shard to stop: no more accepts, pending output is flushed, connections
    /// are closed, then the threads exit. Returns at once; see [`EngineHandle::join`].
    pub fn shutdown(&self) {
        if self.shared.shutdown.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(fds) = self.shared.ring_fds.get() {
            if let Err(e) = wake_rings(fds, Token::simple(Kind::Wake)) {
                tracing::warn!("could not wake shards for shutdown: {e}");
            }
        }
    }

    /// A waker for threads outside the engine (a log writer, a timer thread) that publish
    /// something shards read (e.g. an atomic) and must make sure a sleeping shard looks
    /// at it: see [`RemoteWaker`].
    pub fn remote_waker(&self) -> std::io::Result<RemoteWaker> {
        Ok(RemoteWaker {
            shared: Arc::clone(&self.shared),
            ring: std::sync::Mutex::new(crate::sys::WakeRing::new()?),
        })
    }

    /// Wait for every shard thread to finish.
    pub fn join(self) -> Result<(), EngineError> {
        let mut first_err = None;
        for (i, t) in self.threads.into_iter().enumerate() {
            let r = match t.join() {
                Ok(r) => r,
                Err(_) => Err(EngineError::Shard(i, "panicked".into())),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Start an engine: bind, spawn one pinned thread per shard, create each shard's handler
/// on its own thread with `make_handler`, and return once every shard is serving.
pub fn start<H, F>(config: EngineConfig, make_handler: F) -> Result<EngineHandle, EngineError>
where
    H: Handler,
    F: Fn(ShardInfo) -> H + Send + Sync + 'static,
{
    match (config.listen, config.outgoing_only) {
        (None, false) => {
            return Err(EngineError::Config(
                "no listen address: set EngineConfig::listen (port 0 picks a free port), or \
                 outgoing_only for an engine that only makes outgoing connections"
                    .into(),
            ))
        }
        (Some(addr), true) => {
            return Err(EngineError::Config(format!(
                "outgoing_only is set but so is a listen address ({addr})"
            )))
        }
        _ => {}
    }
    if config.listen.is_none() && !config.extra_listen.is_empty() {
        return Err(EngineError::Config(
            "extra_listen needs a main listen address".into(),
        ));
    }
    if config.max_owed_replies == 0 {
        return Err(EngineError::Config(
            "max_owed_replies must be at least 1".into(),
        ));
    }
    let cores = if config.cores.is_empty() {
        allowed_cores()
    } else {
        config.cores.clone()
    };
    if cores.is_empty() {
        return Err(EngineError::Config("no cores to run on".into()));
    }
    let shards = if config.shards == 0 {
        cores.len()
    } else {
        config.shards
    };
    if shards > 1024 {
        return Err(EngineError::Config(format!(
            "{shards} shards is more than the 1024 supported"
        )));
    }
    let assignment: Vec<Option<usize>> = (0..shards)
        .map(|i| config.pin.then(|| cores[i % cores.len()]))
        .collect();
    let (listeners, local_addr) = match config.listen {
        Some(addr) => {
            let (fds, addr) = bind_listeners(addr, config.backlog, shards)?;
            (Some(fds), Some(addr))
        }
        None => (None, None),
    };
    // Per shard: its listener on the main address, then one per extra address.
    let mut per_shard: Vec<Vec<OwnedFd>> = match listeners {
        Some(ls) => ls.into_iter().map(|l| vec![l]).collect(),
        None => (0..shards).map(|_| Vec::new()).collect(),
    };
    let mut extra_addrs = Vec::with_capacity(config.extra_listen.len());
    for &addr in &config.extra_listen {
        let (fds, bound) = bind_listeners(addr, config.backlog, shards)?;
        extra_addrs.push(bound);
        for (shard, fd) in fds.into_iter().enumerate() {
            per_shard[shard].push(fd);
        }
    }

    let shared = Arc::new(Shared {
        shutdown: AtomicBool::new(false),
        connections: AtomicUsize::new(0),
        extra_connections: AtomicUsize::new(0),
        drained: AtomicUsize::new(0),
        exited: AtomicUsize::new(0),
        parking: (0..shards).map(|_| Parking::default()).collect(),
        ring_fds: OnceLock::new(),
    });
    let config = Arc::new(config);
    let make_handler = Arc::new(make_handler);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(usize, RawFd, Features), EngineError>>();
    let mut go_txs = Vec::with_capacity(shards);
    let mut threads = Vec::with_capacity(shards);
    let boxes = mesh::<Envelope<H>>(shards, config.mailbox_capacity);
    for ((shard, listener), mail) in per_shard.into_iter().enumerate().zip(boxes) {
        let (go_tx, go_rx) = mpsc::channel::<bool>();
        go_txs.push(go_tx);
        let ctx = ThreadCtx {
            info: ShardInfo {
                shard,
                shards,
                core: assignment[shard],
            },
            config: Arc::clone(&config),
            shared: Arc::clone(&shared),
            ready: ready_tx.clone(),
            go: go_rx,
        };
        let make = Arc::clone(&make_handler);
        let t = std::thread::Builder::new()
            .name(format!("shard-{shard}"))
            .spawn(move || shard_thread(ctx, listener, mail, move |i| make(i)))
            .map_err(|e| EngineError::Setup("spawning a shard thread", e))?;
        threads.push(t);
    }
    drop(ready_tx);

    let mut fds = vec![-1; shards];
    let mut features = None;
    let mut failure = None;
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok((shard, fd, f))) => {
                fds[shard] = fd;
                if shard == 0 {
                    features = Some(f);
                }
            }
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert(EngineError::Shard(0, "exited during start-up".into()));
                break;
            }
        }
    }
    if let Some(e) = failure {
        for tx in &go_txs {
            let _ = tx.send(false);
        }
        for t in threads {
            let _ = t.join();
        }
        return Err(e);
    }
    let _ = shared.ring_fds.set(fds);
    for tx in &go_txs {
        let _ = tx.send(true);
    }
    Ok(EngineHandle {
        local_addr,
        extra_addrs,
        features: features.unwrap_or_default(),
        cores: assignment,
        shared,
        threads,
    })
}

struct ThreadCtx {
    info: ShardInfo,
    config: Arc<EngineConfig>,
    shared: Arc<Shared>,
    ready: mpsc::Sender<Result<(usize, RawFd, Features), EngineError>>,
    go: mpsc::Receiver<bool>,
}

/// Counts a shard as exited even if it unwinds, so the others do not wait for it.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.exited.fetch_add(1, Ordering::AcqRel);
        if std::thread::panicking() {
            // A shard that died must not hold up the others: stop everything, and count it
            // as drained so the survivors do not wait for it.
            self.0.shutdown.store(true, Ordering::Release);
            self.0.drained.fetch_add(1, Ordering::AcqRel);
        }
    }
}

fn shard_thread<H: Handler>(
    t: ThreadCtx,
    listener: Vec<OwnedFd>,
    mail: Mailboxes<Envelope<H>>,
    make: impl FnOnce(ShardInfo) -> H,
) -> Result<(), EngineError> {
    let shard = t.info.shard;
    let setup = || -> Result<(Ring, BufRing), EngineError> {
        crate::signal::block_shutdown_signals();
        if let Some(core) = t.info.core {
            pin_current_thread(shard, core)?;
        }
        // Allocated after pinning, so the memory is local to the shard's core.
        let mut ring = Ring::new(t.config.ring_entries)?;
        ring.set_send_zc_min(t.config.send_zc_min);
        let bufring = BufRing::new(&ring, 0, t.config.recv_buffers, t.config.recv_buffer_size)?;
        Ok((ring, bufring))
    };
    let (ring, bufring) = match setup() {
        Ok(v) => v,
        Err(e) => {
            let _ = t.ready.send(Err(e));
            return Ok(());
        }
    };
    let _ = t
        .ready
        .send(Ok((shard, ring.fd(), ring.features().clone())));
    if !matches!(t.go.recv(), Ok(true)) {
        return Ok(());
    }
    let _guard = ExitGuard(Arc::clone(&t.shared));
    let handler = make(t.info);
    let shared = Arc::clone(&t.shared);
    let mut s = Shard::new(
        shard,
        t.info.shards,
        ring,
        bufring,
        listener,
        mail,
        t.shared,
        t.config,
        handler,
    );
    let result = s.run();
    if result.is_err() {
        // Let the others stop too rather than wait on a shard that is gone.
        shared.shutdown.store(true, Ordering::Release);
        shared.drained.fetch_add(1, Ordering::AcqRel);
    }
    drop(_guard);
    // No ring may be closed while another shard could still post a wake into it.
    let deadline = Instant::now() + Duration::from_secs(2);
    while shared.exited.load(Ordering::Acquire) < t.info.shards && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(s);
    result
}

/// Bind one listener per shard on `addr`, all on the same port (also used for each of
/// [`EngineConfig::extra_listen`]).
///
/// The shards share the port through SO_REUSEPORT, but SO_REUSEPORT would just as well let
/// us join a port that another process (another coreshard, say) already listens on with
/// SO_REUSEPORT under the same user, and split its connections with it. Redis refuses a
/// port in use with "Address already in use", and so do we:
///
/// 1. The first listener binds and *listens* without SO_REUSEPORT (SO_REUSEADDR only, so
///    a restart is not held up by TIME_WAIT connections). That fails with EADDRINUSE if
///    anything listens on the port already, SO_REUSEPORT or not. Two engines racing for a
///    free port cannot both get through either: the kernel checks for conflicts again at
///    `listen` (under its lock), and two listening sockets without SO_REUSEPORT conflict,
///    so the second `listen` fails. A separate probe socket closed before the real bind
///    would leave a window for exactly that race.
/// 2. Only then is SO_REUSEPORT switched on for the first listener, and the other shards'
///    listeners (with SO_REUSEPORT) bind to its port, which also settles port 0. A
///    reuseport group is formed when its members start listening, so the first listener
///    joins the group as the second one starts listening, and connections are spread over
///    all of them.
///
/// What remains possible is what SO_REUSEPORT always allows: a process of the same user
/// that sets SO_REUSEPORT itself and joins *after* we started. Another coreshard does not,
/// as it starts with step 1.
fn bind_listeners(
    mut addr: SocketAddr,
    backlog: i32,
    shards: usize,
) -> Result<(Vec<OwnedFd>, SocketAddr), EngineError> {
    let mut out = Vec::with_capacity(shards);
    let first = listener(addr, false, backlog)?;
    let err = move |source| EngineError::Listen { addr, source };
    if addr.port() == 0 {
        // Every other shard joins the port the first one was given.
        addr = first.local_addr().map_err(err)?.as_socket().unwrap_or(addr);
    }
    if shards > 1 {
        first.set_reuse_port(true).map_err(err)?;
    }
    out.push(OwnedFd::from(first));
    for _ in 1..shards {
        out.push(OwnedFd::from(listener(addr, true, backlog)?));
    }
    Ok((out, addr))
}

/// A listening socket on `addr` (SO_REUSEADDR; SO_REUSEPORT if `reuse_port`).
fn listener(addr: SocketAddr, reuse_port: bool, backlog: i32) -> Result<Socket, EngineError> {
    let err = |source| EngineError::Listen { addr, source };
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None).map_err(err)?;
    sock.set_reuse_address(true).map_err(err)?;
    if reuse_port {
        sock.set_reuse_port(true).map_err(err)?;
    }
    sock.bind(&addr.into()).map_err(err)?;
    sock.listen(backlog).map_err(err)?;
    Ok(sock)
}
