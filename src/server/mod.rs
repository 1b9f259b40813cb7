//! The server runtime: listeners on one port (plus the optional WebSocket-only port), connection
//! limits, and the start and stop of everything else (hub, admin endpoint, allow-list watcher).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smol::net::TcpListener;
use smol::Executor;

use crate::config::{Config, Limits};
use crate::console;
use crate::hub::{self, Hub, HubSettings};
use crate::throttle::Throttle;
use crate::{conn, http};

mod accept;
mod slots;

use accept::accept_loop;

pub use slots::{Full, Progress, Slot, Slots, RESERVED_DIVISOR};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A port cannot be bound.
    #[error("cannot listen on {addr}: {source}{hint}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// The tunnel cannot be started.
    #[error(transparent)]
    Tunnel(#[from] crate::tunnel::TunnelError),
    /// The transcript cannot be created.
    #[error("--transcription: {0}")]
    Transcript(String),
    /// A thread cannot be started (the system is out of threads or memory).
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
}

/// Shared by every connection task.
pub struct Ctx {
    /// The hub's event channel.
    pub hub: async_channel::Sender<hub::Event>,
    /// Protective limits.
    pub limits: Limits,
    /// Next connection id.
    pub next_id: AtomicU64,
    /// Operator output.
    pub out: console::Output,
    /// Connection slots in use.
    slots: Arc<Mutex<Slots>>,
    /// Executor for connection tasks.
    pub ex: Arc<Executor<'static>>,
    /// The allow list file and its current entries.
    pub allow: Mutex<Option<(std::path::PathBuf, Arc<crate::allowlist::AllowList>)>>,
    /// The SSH tunnel, if any.
    pub tunnel: Mutex<Option<crate::tunnel::Tunnel>>,
    /// The names and addresses requests may carry in `Host` and `Origin`.
    pub hosts: http::Hosts,
    /// TLS for the listeners.
    tls: Option<futures_rustls::TlsAcceptor>,
    stopping: AtomicBool,
    /// Chat sessions (upgraded WebSockets) still running: the ones a shutdown waits for.
    pub sessions: std::sync::atomic::AtomicUsize,
    /// Told each time a chat session ends.
    pub session_ended: event_listener::Event,
    /// Bytes of messages waiting for the hub.
    pub hub_budget: Arc<hub::Budget>,
    /// The panic stop (`/panic`, SIGUSR1), armed with `--panic`.
    pub panic: crate::panic::Button,
    /// Join attempts, rate-limited per address and in total.
    pub join_gate: Mutex<conn::JoinGate>,
    /// Refused joins, as told to the operator.
    pub refused_joins: Arc<Mutex<Throttle>>,
    /// Connections that ended in an error, as told to the operator.
    pub conn_errors: Arc<Mutex<Throttle>>,
    /// Connections being answered "full".
    refusing: std::sync::atomic::AtomicUsize,
}

/// Longest wait at shutdown for the admin's endpoint to show its last lines.
const CONSOLE_DRAIN: Duration = Duration::from_secs(2);

/// Longest wait at shutdown for connections to write their close frames.
const CLOSE_DRAIN: Duration = Duration::from_secs(5);
/// Threads that run the connections' tasks (and wait on the sockets when idle). One: a second
/// worker made each socket event a wake-up of the other thread (a futex call and a context switch)
/// and the two handed the reactor back and forth, which cost more than the second core gave
/// (see BENCHMARKS.md, *Direct messages*). RSA work is not on it: the admin's endpoint has its own
/// thread, and a join's proof is checked in about 0.1 ms.
const WORKERS: usize = 1;
/// Events that may wait for the hub. The channel takes its slots up front (about 250 bytes
/// each); what waits is bounded in bytes anyway (`hub::HUB_QUEUE_BYTES`), and a reader that finds
/// the channel full waits like one over the byte budget.
const HUB_EVENTS: usize = 256;

impl Ctx {
    /// Tells the operator `text` about something `from` caused, unless too many such lines were
    /// told already in this window (then they are summarised when it ends).
    pub fn tell_throttled(
        &self,
        throttle: &Arc<Mutex<Throttle>>,
        from: IpAddr,
        reason: &'static str,
        text: impl FnOnce() -> String,
    ) {
        let verdict = lock(throttle).line(Instant::now(), from, reason);
        if let Some(summary) = verdict.summary {
            self.out.notice(summary);
        }
        if verdict.show {
            self.out.notice(text());
        }
        if let Some(at) = verdict.flush_at {
            let (throttle, out) = (throttle.clone(), self.out.clone());
            self.ex
                .spawn(async move {
                    smol::Timer::at(at).await;
                    let summary = lock(&throttle).flush();
                    if let Some(summary) = summary {
                        out.notice(summary);
                    }
                })
                .detach();
        }
    }

    /// Waits until every chat session has ended (written its close frame), or `limit` passed.
    /// Idle HTTP connections (a page's keep-alive) have nothing to say and are not waited for.
    pub(crate) async fn drained(&self, limit: Duration) {
        let all_ended = async {
            loop {
                let ended = self.session_ended.listen();
                if self.sessions.load(Ordering::SeqCst) == 0 {
                    return;
                }
                ended.await;
            }
        };
        let _ = conn::timeout(limit, all_ended).await;
    }

    /// No more connections are accepted.
    pub(crate) fn stop_accepting(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }
}

/// A running server.
pub struct Running {
    /// Where the page and the WebSocket are served.
    pub addr: SocketAddr,
    /// The extra WebSocket-only listener, if any.
    pub ws_addr: Option<SocketAddr>,
    /// Lines typed at the admin prompt.
    pub prompt: async_channel::Sender<String>,
    /// What the server shows the operator.
    pub output: crate::console::Lines,
    stop: async_channel::Sender<()>,
    done: async_channel::Receiver<()>,
    threads: Vec<JoinHandle<()>>,
    panic: crate::panic::Button,
    out: console::Output,
}

impl Running {
    /// The panic stop's button (it does nothing without `--panic`).
    pub fn panic_button(&self) -> crate::panic::Button {
        self.panic.clone()
    }

    /// A handle that shows notices to the operator (and writes them to the transcript).
    pub fn output(&self) -> console::Output {
        self.out.clone()
    }

    /// Asks the server to stop: clients get a close frame, the transcript its last line.
    pub fn shutdown(&self) {
        let _ = self.stop.try_send(());
    }

    /// A handle that stops the server from another thread (signal handlers).
    pub fn stopper(&self) -> async_channel::Sender<()> {
        self.stop.clone()
    }

    /// Waits until the server has stopped (after `/quit` or [`Running::shutdown`]).
    pub fn wait(mut self) {
        let _ = park_on(self.done.recv());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.try_send(());
    }
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, StartError> {
    std::net::TcpListener::bind(addr).map_err(|source| {
        let hint = match source.kind() {
            std::io::ErrorKind::PermissionDenied => {
                " (ports below 1024 need root; use a port like 8080)"
            }
            std::io::ErrorKind::AddrInUse => {
                " (another program uses this port; pick another with -p)"
            }
            std::io::ErrorKind::AddrNotAvailable => " (this machine has no such address)",
            _ => "",
        };
        StartError::Bind { addr, source, hint }
    })
}

/// Ports bound and files opened, nothing running yet: safe to fork (daemon mode) after this.
pub struct Bound {
    config: Config,
    listener: std::net::TcpListener,
    ws_listener: Option<std::net::TcpListener>,
    transcript: Option<crate::transcript::Transcript>,
    /// The main address.
    pub addr: SocketAddr,
    /// The WebSocket-only address.
    pub ws_addr: Option<SocketAddr>,
}

/// Binds the ports and creates the transcript, without starting any thread.
pub fn bind_all(config: Config) -> Result<Bound, StartError> {
    let listener = bind(config.listen)?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
        hint: "",
    })?;
    let ws_listener = match config.ws_port {
        Some(port) => Some(bind(SocketAddr::new(config.listen.ip(), port))?),
        None => None,
    };
    let ws_addr = ws_listener.as_ref().and_then(|l| l.local_addr().ok());
    let transcript = match &config.transcript {
        Some(path) => {
            Some(crate::transcript::Transcript::create(path).map_err(StartError::Transcript)?)
        }
        None => None,
    };
    Ok(Bound {
        config,
        listener,
        ws_listener,
        transcript,
        addr,
        ws_addr,
    })
}

/// Starts the server: binds the ports, then runs everything on its own threads.
pub fn start(config: Config) -> Result<Running, StartError> {
    bind_all(config)?.run()
}

fn listen(l: std::net::TcpListener, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::try_from(l).map_err(|source| StartError::Bind {
        addr,
        source,
        hint: "",
    })
}

impl Bound {
    /// Runs the server on its own threads.
    pub fn run(self) -> Result<Running, StartError> {
        let Bound {
            config,
            listener,
            ws_listener,
            transcript,
            addr,
            ws_addr,
        } = self;
        let ex = Arc::new(Executor::new());
        let listener = listen(listener, addr)?;
        let ws_listener = match (ws_listener, ws_addr) {
            (Some(l), Some(a)) => Some(listen(l, a)?),
            _ => None,
        };
        let (out, output) = console::Output::new(transcript);
        let (hub_tx, hub_rx) = async_channel::bounded(HUB_EVENTS);
        let (panic, pressed) = crate::panic::Button::new(config.panic.is_some());
        let ctx = Arc::new(Ctx {
            hub: hub_tx,
            limits: config.limits.clone(),
            next_id: AtomicU64::new(1),
            out: out.clone(),
            slots: Arc::default(),
            ex: ex.clone(),
            allow: Mutex::new(
                config
                    .allow_list
                    .as_ref()
                    .map(|(p, l, _)| (p.clone(), l.clone())),
            ),
            tunnel: Mutex::new(None),
            hosts: hosts_of(&config, addr),
            tls: config
                .tls
                .as_ref()
                .map(|t| futures_rustls::TlsAcceptor::from(t.server.clone())),
            stopping: AtomicBool::new(false),
            sessions: std::sync::atomic::AtomicUsize::new(0),
            session_ended: event_listener::Event::new(),
            panic: panic.clone(),
            refusing: std::sync::atomic::AtomicUsize::new(0),
            hub_budget: hub::Budget::new(hub::HUB_QUEUE_BYTES),
            join_gate: Mutex::new(conn::JoinGate::new(config.limits.join_rate)),
            refused_joins: Arc::new(Mutex::new(Throttle::new("refused joins"))),
            conn_errors: Arc::new(Mutex::new(Throttle::new("connections ended by an error"))),
        });
        if let (Some(pressed), Some(settings)) = (pressed, config.panic.clone()) {
            crate::panic::watch(pressed, settings, Arc::downgrade(&ctx))
                .map_err(|e| StartError::Thread("panic stop's", e))?;
        }
        let settings = HubSettings {
            admin_name: config.admin_name.clone(),
            disable_all: config.disable_all,
            only_admin: config.only_admin,
            remember: config.remember,
            rate_per_sec: config.limits.rate_per_sec,
            burst: config.limits.burst,
            mailbox_bytes: config.limits.mailbox_bytes,
            mailbox_total: config.limits.mailbox_total,
            away_grace: config.limits.away_grace,
            // As many away as may be connected: members cost memory whether online or not.
            max_away: config.limits.max_connections,
            max_file: config.limits.max_file,
            file_idle: config.limits.file_idle,
            groups: config.limits.groups,
        };
        let allow = config.allow_list.as_ref().map(|(_, list, _)| list.clone());
        let hub_task = ex.spawn(hub::run(Hub::new(settings, allow), hub_rx));
        let (prompt, prompt_rx) = async_channel::bounded(64);
        let (stop, stop_rx) = async_channel::bounded(4);
        ex.spawn(accept_loop(listener, ctx.clone(), false)).detach();
        if let Some(l) = ws_listener {
            ex.spawn(accept_loop(l, ctx.clone(), true)).detach();
        }
        if let Some((path, _, problems)) = &config.allow_list {
            for p in problems {
                out.notice(format!("allow list {}: {p}", path.display()));
            }
            ex.spawn(crate::admin::watch_allow_list(path.clone(), ctx.clone()))
                .detach();
        }
        // The admin's endpoint opens what members address to the admin with the admin's
        // private key: on its own thread, never on the relay's workers.
        let (console_config, console_ctx, console_stop) =
            (config.clone(), ctx.clone(), stop.clone());
        // Closed when the admin's endpoint has shown its last line (the stopper waits for it).
        let (console_done, console_ended) = async_channel::bounded::<()>(1);
        std::thread::Builder::new()
            .name("dyspatcher-admin".into())
            .spawn(move || {
                park_on(console::run(
                    console_config,
                    console_ctx,
                    prompt_rx,
                    console_stop,
                ));
                drop(console_done);
            })
            .map_err(|e| StartError::Thread("admin's", e))?;
        if let Some(settings) = config.tunnel.clone() {
            start_tunnel(
                settings,
                &ctx,
                (addr, config.tunnel_remote_port),
                ws_addr,
                config.tls.is_some(),
            )?;
        }

        let (done_tx, done) = async_channel::bounded(1);
        let threads = spawn_threads(
            ex.clone(),
            stop_rx,
            ctx,
            (hub_task, console_ended),
            out.clone(),
            done_tx,
        );
        Ok(Running {
            addr,
            ws_addr,
            prompt,
            output,
            stop,
            done,
            threads,
            panic,
            out,
        })
    }
}

/// The names the server answers to: its addresses, its self-signed certificate's names, the
/// SSH server the tunnel makes it reachable under, and `--allowed-host`.
fn hosts_of(config: &Config, addr: SocketAddr) -> http::Hosts {
    let cert_names = config
        .tls
        .as_ref()
        .filter(|t| t.self_signed.is_some())
        .map(|_| crate::onboard::certificate_names(addr.ip()))
        .unwrap_or_default();
    let tunnel = config.tunnel.as_ref().map(|t| t.host.as_str());
    let own = cert_names
        .iter()
        .map(String::as_str)
        .chain(tunnel)
        .filter_map(|name| http::HostName::parse(name).ok());
    http::Hosts::new(&[addr.ip()], config.tls.is_some())
        .with_own(own)
        .with_allowed(config.allowed_hosts.iter().cloned())
}

fn spawn_threads(
    ex: Arc<Executor<'static>>,
    stop_rx: async_channel::Receiver<()>,
    ctx: Arc<Ctx>,
    (hub_task, console_ended): (smol::Task<()>, async_channel::Receiver<()>),
    out: console::Output,
    done_tx: async_channel::Sender<()>,
) -> Vec<JoinHandle<()>> {
    let workers = WORKERS;
    let (quit_tx, quit_rx) = async_channel::bounded::<()>(1);
    let mut threads = Vec::new();
    for i in 0..workers {
        let ex = ex.clone();
        let quit = quit_rx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("dyspatcher-{i}"))
                .spawn(move || {
                    let _ = smol::block_on(ex.run(quit.recv()));
                })
                .expect("cannot start a thread"),
        );
    }
    // The stopper: waits for a stop request, then closes everything in order.
    threads.push(
        std::thread::Builder::new()
            .name("dyspatcher-stop".into())
            .spawn(move || {
                park_on(async {
                    let _ = stop_rx.recv().await;
                    ctx.stopping.store(true, Ordering::SeqCst);
                    out.notice("the server is stopping".to_string());
                    let tunnel = ctx.tunnel.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some(tunnel) = tunnel {
                        tunnel.stop();
                    }
                    let _ = ctx.hub.send(hub::Event::Shutdown).await;
                    hub_task.await;
                    // Every connection has its close frame queued: wait until each has written
                    // it and ended (its slot is given back), or the writers' deadline passed.
                    ctx.drained(CLOSE_DRAIN).await;
                    // The admin's endpoint shows what the hub sent it last (the shutdown notice)
                    // before the last line is written.
                    let _ = crate::conn::timeout(CONSOLE_DRAIN, console_ended.recv()).await;
                    out.notice("stopped".to_string());
                    out.close();
                });
                drop(quit_tx);
                let _ = done_tx.try_send(());
            })
            .expect("cannot start a thread"),
    );
    threads
}

fn start_tunnel(
    mut settings: crate::tunnel::TunnelSettings,
    ctx: &Arc<Ctx>,
    (addr, remote): (SocketAddr, Option<u16>),
    ws_addr: Option<SocketAddr>,
    tls: bool,
) -> Result<(), StartError> {
    let local = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    settings.forwards = std::iter::once((remote.unwrap_or(addr.port()), addr.port()))
        .chain(ws_addr.map(|a| (a.port(), a.port())))
        .map(|(remote, local_port)| (remote, local.clone(), local_port))
        .collect();
    let out = ctx.out.clone();
    let tunnel =
        crate::tunnel::Tunnel::start(settings, move |state| out.notice(state.to_string()))?;
    ctx.out.notice(format!(
        "from the internet, through the tunnel: {}",
        tunnel.public_url(tls)
    ));
    *ctx.tunnel.lock().unwrap_or_else(|e| e.into_inner()) = Some(tunnel);
    Ok(())
}

/// Runs `f` to its end on the calling thread without ever waiting on the sockets. `smol::block_on`
/// makes the thread that calls it wait on the I/O reactor whenever the reactor is free: a thread
/// that only waits for a channel (the stopper, the caller of [`Running::wait`]) or works apart
/// (the admin's endpoint) would then receive the sockets' events and hand each to the worker
/// through a wake-up of another thread, a futex call and a context switch per event.
fn park_on<T>(f: impl std::future::Future<Output = T>) -> T {
    futures_lite::future::block_on(f)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
