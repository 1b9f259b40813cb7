//! `--startup`: how long the server takes from being started to accepting connections and to
//! serving its page, with an admin key file and while the admin key is still being generated.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::proc;
use super::report::Summary;
use super::{BenchError, Plan};

/// Start-up timings of one kind of start.
pub struct Case {
    /// What was started.
    pub what: &'static str,
    /// Start to the first accepted connection.
    pub listen: Option<Summary>,
    /// Start to the page received whole.
    pub page: Option<Summary>,
    /// Resident memory right after the page was served, median, KiB.
    pub rss_kib: Option<u64>,
}

/// The report of `--startup`.
pub struct StartupReport {
    /// Each kind of start.
    pub cases: Vec<Case>,
    /// Starts per case.
    pub repeat: usize,
    /// The executable's size in bytes.
    pub binary_bytes: Option<u64>,
}

/// Times `plan.args.repeat` starts with a key file and as many while a key is generated.
pub fn run(plan: &Plan) -> Result<StartupReport, BenchError> {
    let a = &plan.args;
    let program = match &a.server_command {
        Some(p) => p.clone(),
        None => proc::this_executable()
            .ok_or_else(|| BenchError::Run("cannot find this executable".into()))?,
    };
    let admin_dir = plan.keys_dir().join(format!("admin-{}", a.bits));
    crate::keycache::load_or_make(&admin_dir, 1, a.bits)?;
    let key = admin_dir.join(format!("rsa{}-00000.pem", a.bits));
    let mut cases = Vec::new();
    for (what, with_key) in [
        ("with a key file", true),
        ("while the admin key is generated", false),
    ] {
        let mut listen = Vec::new();
        let mut page = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..a.repeat {
            let port = free_port()?;
            let mut cmd = Command::new(&program);
            cmd.args(["-p", &port.to_string()]);
            if with_key {
                cmd.arg("--admin-private-key").arg(&key);
            }
            let (l, p, r) = time_start(cmd, port)?;
            listen.push(l);
            page.push(p);
            rss.extend(r);
        }
        rss.sort();
        cases.push(Case {
            what,
            listen: Summary::of(&listen),
            page: Summary::of(&page),
            rss_kib: rss.get(rss.len() / 2).copied(),
        });
    }
    Ok(StartupReport {
        cases,
        repeat: a.repeat,
        binary_bytes: std::fs::metadata(&program).ok().map(|m| m.len()),
    })
}

fn free_port() -> Result<u16, BenchError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| BenchError::Run(format!("cannot find a free port: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| BenchError::Run(e.to_string()))?
        .port())
}

/// Starts the server and returns the time to the first connection, the time to the page, and
/// its memory then.
fn time_start(
    mut cmd: Command,
    port: u16,
) -> Result<(Duration, Duration, Option<u64>), BenchError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::Run(format!("cannot start the server: {e}")))?;
    let limit = start + Duration::from_secs(10);
    let result = (|| {
        let listen = loop {
            if TcpStream::connect(addr).is_ok() {
                break start.elapsed();
            }
            if Instant::now() > limit || matches!(child.try_wait(), Ok(Some(_))) {
                return Err(BenchError::Run(format!(
                    "the server never listened on {addr}"
                )));
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let page = get_page(addr).map_err(|e| BenchError::Run(format!("GET /: {e}")))?;
        let page_time = start.elapsed();
        if !page.starts_with("HTTP/1.1 200") {
            return Err(BenchError::Run(format!(
                "GET / answered {}",
                page.lines().next().unwrap_or_default()
            )));
        }
        Ok((
            listen,
            page_time,
            proc::memory(child.id()).map(|m| m.rss_kib),
        ))
    })();
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"/quit\n");
    }
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until && !matches!(child.try_wait(), Ok(Some(_))) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn get_page(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

impl fmt::Display for StartupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dyspatcher bench --startup: {} starts each", self.repeat)?;
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        let mut result = String::from("result:");
        for (i, c) in self.cases.iter().enumerate() {
            if let (Some(l), Some(p)) = (c.listen, c.page) {
                writeln!(
                    f,
                    "{:<34} listening p50 {}, max {}; page served p50 {}, max {}; RSS {}",
                    c.what,
                    ms(l.p50),
                    ms(l.max),
                    ms(p.p50),
                    ms(p.max),
                    c.rss_kib
                        .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
                )?;
                let tag = if i == 0 { "key" } else { "generating" };
                result += &format!(
                    " {tag}_listen_ms={:.1} {tag}_page_ms={:.1} {tag}_rss_kib={}",
                    l.p50.as_secs_f64() * 1000.0,
                    p.p50.as_secs_f64() * 1000.0,
                    c.rss_kib.unwrap_or(0)
                );
            }
        }
        if let Some(b) = self.binary_bytes {
            writeln!(
                f,
                "{:<34} {:.2} MiB ({b} bytes)",
                "executable",
                b as f64 / 1048576.0
            )?;
            result += &format!(" binary_bytes={b}");
        }
        write!(f, "{result}")
    }
}
