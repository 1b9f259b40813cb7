//! The HTTP phase of a connection: the page's files, refusals of bad requests, and the upgrade
//! to a WebSocket at `/ws`. The first request head is due within a short deadline counted from
//! the accept; later ones (keep-alive) within `head_timeout`.

use std::time::Instant;

use futures_lite::io::{AsyncRead, AsyncWrite};

use super::timeout;
use crate::http::{self, HeadError};
use crate::server::{Ctx, Progress};

/// Answers HTTP requests until one upgrades to a WebSocket (then returns the bytes read past
/// the upgrade request) or the connection ends.
pub(super) async fn http_phase<S>(
    stream: &mut S,
    ctx: &Ctx,
    ws_only: bool,
    progress: &Progress,
    first_head: Instant,
) -> Option<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    // Until a first complete head, the short deadline counted from the connection's accept.
    let mut wait = first_head.saturating_duration_since(Instant::now());
    loop {
        let head = timeout(wait, http::read_head(stream, &mut buf)).await;
        wait = ctx.limits.head_timeout;
        if let Some(Ok(_)) = &head {
            progress.heard();
        }
        let req = match head {
            None | Some(Err(HeadError::Closed)) | Some(Err(HeadError::Io(_))) => return None,
            Some(Err(HeadError::TooLarge)) => {
                let _ = http::respond_error(
                    stream,
                    "431 Request Header Fields Too Large",
                    "request head too large",
                )
                .await;
                return None;
            }
            Some(Err(e @ HeadError::Malformed(_))) => {
                let _ = http::respond_error(stream, "400 Bad Request", &e.to_string()).await;
                return None;
            }
            Some(Ok(req)) => req,
        };
        if let Err(refused) = ctx.hosts.check(&req) {
            let _ = http::respond_error(stream, refused.status, &refused.reason).await;
            return None;
        }
        let head_only = req.method == "HEAD";
        if req.method != "GET" && !head_only {
            let _ = http::respond_error(
                stream,
                "405 Method Not Allowed",
                "only GET and HEAD are served",
            )
            .await;
            return None;
        }
        if req.path == "/ws" {
            match http::check_upgrade(&req) {
                Ok(accept) if !head_only => {
                    if http::accept_upgrade(stream, &accept).await.is_ok() {
                        return Some(buf);
                    }
                }
                Ok(_) => {
                    let _ = http::respond_error(
                        stream,
                        "400 Bad Request",
                        "WebSocket upgrade expected at /ws",
                    )
                    .await;
                }
                Err((status, text)) => {
                    let _ = http::respond_error(stream, status, text).await;
                }
            }
            return None;
        }
        let found = if ws_only {
            None
        } else {
            http::asset(&req.path)
        };
        let Some(asset) = found else {
            let _ = http::respond_error(stream, "404 Not Found", "not found").await;
            return None;
        };
        let keep = req.keep_alive();
        let mut extra = String::from(if keep { "" } else { "Connection: close\r\n" });
        let gzip = asset.gzip && http::accepts_gzip(&req);
        if asset.gzip {
            extra.push_str("Vary: Accept-Encoding\r\n");
        }
        if gzip {
            extra.push_str("Content-Encoding: gzip\r\n");
        }
        let body = if gzip {
            std::borrow::Cow::Borrowed(asset.body)
        } else {
            asset.plain()
        };
        if http::respond(
            stream,
            "200 OK",
            asset.content_type,
            &body,
            head_only,
            &extra,
        )
        .await
        .is_err()
            || !keep
        {
            return None;
        }
    }
}
