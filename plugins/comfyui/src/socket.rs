//! ComfyUI's websocket `/ws?clientId=`: the messages about the prompts of one client.
//!
//! Reads wait at most [`READ_TIMEOUT`], so the caller notices a cancelled job between
//! messages. Binary frames (previews of the image being sampled) are skipped.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use launcher_sdk::serde_json::{self, Value};
use tungstenite::{Message, WebSocket};

/// How long one read waits for a message.
pub const READ_TIMEOUT: Duration = Duration::from_millis(200);

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An open websocket to ComfyUI.
pub struct Socket {
    ws: WebSocket<TcpStream>,
}

impl Socket {
    /// Connects to the websocket of the server at `base` (`http://host:port`) as `client_id`.
    pub fn connect(base: &str, client_id: &str) -> Result<Socket, String> {
        let rest = base.strip_prefix("http://").ok_or_else(|| {
            "the websocket is followed only on plain http:// servers (no TLS)".to_string()
        })?;
        let (authority, prefix) = match rest.split_once('/') {
            Some((host, prefix)) => (host, format!("/{prefix}")),
            None => (rest, String::new()),
        };
        let addr = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let target = addr
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or_else(|| format!("`{authority}` resolves to no address"))?;
        let stream =
            TcpStream::connect_timeout(&target, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let url = format!(
            "ws://{authority}{prefix}/ws?clientId={}",
            crate::api::encode(client_id)
        );
        let (ws, _) = tungstenite::client(url.as_str(), stream).map_err(|e| e.to_string())?;
        ws.get_ref()
            .set_read_timeout(Some(READ_TIMEOUT))
            .map_err(|e| e.to_string())?;
        Ok(Socket { ws })
    }

    /// Returns the next text message as JSON, `None` when none came within [`READ_TIMEOUT`],
    /// or why the socket is unusable.
    pub fn receive(&mut self) -> Result<Option<Value>, String> {
        match self.ws.read() {
            Ok(Message::Text(text)) => serde_json::from_str(text.as_str())
                .map(Some)
                .map_err(|e| format!("a message is not JSON: {e}")),
            Ok(Message::Close(_)) => Err("ComfyUI closed the websocket".to_string()),
            Ok(_) => Ok(None),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}
