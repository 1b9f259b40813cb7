//! The server runtime: listeners on one port (plus the optional WebSocket-only port), connection
//! limits, and the start and stop of everything else (hub, admin endpoint, allow-list watcher).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use smol::net::{TcpListener, TcpStream};
use smol::Executor;

use crate::config::{Config, Limits};
use crate::console::{self, Line};
use crate::hub::{self, Hub, HubSettings};
use crate::{conn, http};

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
    #[error("cannot start the admin's thread: {0}")]
    Thread(std::io::Error),
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
    slots: Mutex<Slots>,
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
    /// The panic stop (`/panic`, SIGUSR1), armed with `--panic`.
    pub panic: crate::panic::Button,
}

#[derive(Default)]
struct Slots {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Longest wait at shutdown for the admin's endpoint to show its last lines.
const CONSOLE_DRAIN: Duration = Duration::from_secs(2);

/// Longest wait at shutdown for connections to write their close frames.
const CLOSE_DRAIN: Duration = Duration::from_secs(5);

/// A held connection slot, released on drop.
pub struct Slot {
    ctx: Arc<Ctx>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut slots = self.ctx.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.total -= 1;
        if let Some(n) = slots.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                slots.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Whether a new connection from `ip` fits the limits; loopback counts only toward the total,
/// because everyone arriving through the SSH tunnel comes from loopback.
pub fn admits(limits: &Limits, total: usize, from_ip: usize, ip: IpAddr) -> bool {
    total < limits.max_connections && (ip.is_loopback() || from_ip < limits.max_per_ip)
}

impl Ctx {
    /// Waits until every chat session has ended (written its close frame), or `limit` passed.
    /// Idle HTTP connections (a page's keep-alive) have nothing to say and are not waited for.
    pub(crate) async fn drained(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        let mut tick = smol::Timer::interval(Duration::from_millis(10));
        while self.sessions.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            futures_lite::StreamExt::next(&mut tick).await;
        }
    }

    /// No more connections are accepted.
    pub(crate) fn stop_accepting(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = slots.per_ip.get(&ip).copied().unwrap_or(0);
        if !admits(&self.limits, slots.total, from_ip, ip) {
            return None;
        }
        slots.total += 1;
        *slots.per_ip.entry(ip).or_default() += 1;
        Some(Slot {
            ctx: self.clone(),
            ip,
        })
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
    pub output: async_channel::Receiver<Line>,
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
        let _ = smol::block_on(self.done.recv());
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
        let (hub_tx, hub_rx) = async_channel::bounded(4096);
        let (panic, pressed) = crate::panic::Button::new(config.panic.is_some());
        let ctx = Arc::new(Ctx {
            hub: hub_tx,
            limits: config.limits.clone(),
            next_id: AtomicU64::new(1),
            out: out.clone(),
            slots: Mutex::new(Slots::default()),
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
            panic: panic.clone(),
        });
        if let (Some(pressed), Some(settings)) = (pressed, config.panic.clone()) {
            crate::panic::watch(pressed, settings, Arc::downgrade(&ctx))
                .map_err(StartError::Thread)?;
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
                smol::block_on(console::run(
                    console_config,
                    console_ctx,
                    prompt_rx,
                    console_stop,
                ));
                drop(console_done);
            })
            .map_err(StartError::Thread)?;
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
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
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
                smol::block_on(async {
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

async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>, ws_only: bool) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: report, breathe, go on.
                ctx.out.notice(format!("accept failed: {e}"));
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        if ctx.stopping.load(Ordering::SeqCst) {
            return;
        }
        let _ = stream.set_nodelay(true);
        let slot = ctx.acquire(peer.ip());
        let task_ctx = ctx.clone();
        ctx.ex
            .spawn(async move {
                match (slot, task_ctx.tls.clone()) {
                    (Some(slot), None) => serve(stream, peer, task_ctx, ws_only, slot).await,
                    (Some(slot), Some(acceptor)) => {
                        let handshake = acceptor.accept(stream);
                        let limit = task_ctx.limits.head_timeout;
                        let tls = futures_lite::future::or(async { handshake.await.ok() }, async {
                            smol::Timer::after(limit).await;
                            None
                        })
                        .await;
                        // A refused handshake is ordinary (a browser meeting a self-signed certificate).
                        if let Some(tls) = tls {
                            serve(tls, peer, task_ctx, ws_only, slot).await;
                        }
                    }
                    (None, None) => refuse_full(stream).await,
                    (None, Some(_)) => {}
                }
            })
            .detach();
    }
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

async fn refuse_full(mut stream: TcpStream) {
    // Read the request first: closing on unread bytes would reset the connection and lose the answer.
    let mut buf = Vec::new();
    let read = http::read_head(&mut stream, &mut buf);
    let _ = futures_lite::future::or(async { read.await.ok() }, async {
        smol::Timer::after(Duration::from_secs(2)).await;
        None
    })
    .await;
    let _ = http::respond_error(
        &mut stream,
        "503 Service Unavailable",
        "the server is full; try again later",
    )
    .await;
}

async fn serve<S>(stream: S, peer: SocketAddr, ctx: Arc<Ctx>, ws_only: bool, slot: Slot)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    conn::serve(stream, peer, ctx, ws_only).await;
    drop(slot);
}
