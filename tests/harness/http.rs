//! A minimal HTTP/1.1 client for the Docker engine API over its unix socket.
//!
//! It sends one body-less request per connection with `Connection: close`, reads until the engine
//! hangs up and then decodes the body (`Content-Length`, chunked, or "until EOF"). It is not a general
//! HTTP client: no keep-alive, no redirects, no request bodies — reading the engine's state and
//! stopping its containers need none of them.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A response as the engine sent it, with the body already de-chunked.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code from the status line (`200`).
    pub status: u16,
    /// Header names lower-cased, values trimmed, in the order received.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text, lossily; for error messages.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `GET path` to the engine listening on `socket` and returns its decoded response.
///
/// `timeout` bounds each read and write, so a wedged engine fails the test instead of hanging it.
pub fn get(socket: &Path, path: &str, timeout: Duration) -> Result<Response, String> {
    request(socket, "GET", path, timeout)
}

/// Sends a body-less `POST path` (an action such as `/containers/<id>/kill`).
pub fn post(socket: &Path, path: &str, timeout: Duration) -> Result<Response, String> {
    request(socket, "POST", path, timeout)
}

fn request(socket: &Path, method: &str, path: &str, timeout: Duration) -> Result<Response, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect to {}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("set timeouts on {}: {e}", socket.display()))?;
    // The Host value is arbitrary for a unix socket, but HTTP/1.1 requires the header.
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: ovlaudit-tests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("send {method} {path} to {}: {e}", socket.display()))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read the response to {method} {path} from {}: {e}", socket.display()))?;
    parse_response(&raw).map_err(|e| format!("{method} {path} from {}: {e}", socket.display()))
}

/// Parses a complete HTTP/1.1 response (everything the server sent before closing).
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head_end = find(raw, b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {} bytes: {:?}", raw.len(), String::from_utf8_lossy(raw)))?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|e| format!("response headers are not UTF-8: {e}"))?;
    let rest = &raw[head_end + 4..];

    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = parse_status_line(status_line)?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| format!("malformed header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }

    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let chunked = header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|e| format!("bad Content-Length {len:?}: {e}"))?;
        if rest.len() < len {
            return Err(format!("body truncated: Content-Length {len} but only {} bytes arrived", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        // With `Connection: close` and neither framing header, the body runs to EOF.
        rest.to_vec()
    };
    Ok(Response { status, headers, body })
}

fn parse_status_line(line: &str) -> Result<u16, String> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x status line: {line:?}"));
    }
    code.parse().map_err(|e| format!("bad status code in {line:?}: {e}"))
}

/// Decodes a chunked body; trailers after the last chunk are ignored.
pub fn decode_chunked(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or("chunked body ends inside a chunk-size line")?;
        let size_line =
            std::str::from_utf8(&data[..line_end]).map_err(|e| format!("chunk-size line is not UTF-8: {e}"))?;
        // A chunk extension (`;name=value`) may follow the size.
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|e| format!("bad chunk size {size_line:?}: {e}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 {
            return Err(format!("chunk of {size} bytes truncated: {} bytes left", data.len()));
        }
        body.extend_from_slice(&data[..size]);
        if &data[size..size + 2] != b"\r\n" {
            return Err(format!("chunk of {size} bytes not followed by CRLF"));
        }
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod parser_tests {
    use super::*;

    #[test]
    fn content_length_body_of_a_ping() {
        // What dockerd 20.10 answers to GET /_ping.
        let raw = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nCache-Control: no-cache, no-store, must-revalidate\r\nContent-Length: 2\r\nContent-Type: text/plain; charset=utf-8\r\nDocker-Experimental: false\r\nOstype: linux\r\nPragma: no-cache\r\nServer: Docker/20.10.24+dfsg1 (linux)\r\nDate: Fri, 28 Nov 2025 16:40:00 GMT\r\nConnection: close\r\n\r\nOK";
        let response = parse_response(raw).expect("parse a ping response");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"OK");
        assert!(response.headers.contains(&("api-version".to_string(), "1.41".to_string())));
    }

    #[test]
    fn chunked_body_split_inside_a_json_value() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[{\"a\"\r\nA;ext=1\r\n:12345678}\r\n1\r\n]\r\n0\r\nX-Trailer: t\r\n\r\n";
        let response = parse_response(raw).expect("parse a chunked response");
        assert_eq!(response.body, b"[{\"a\":12345678}]");
    }

    #[test]
    fn error_status_keeps_its_body() {
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 44\r\n\r\n{\"message\":\"No such image: nosuch:latest\"}\n\n";
        let response = parse_response(raw).expect("parse a 404");
        assert_eq!(response.status, 404);
        assert_eq!(response.body_text(), "{\"message\":\"No such image: nosuch:latest\"}\n\n");
    }

    #[test]
    fn body_without_framing_runs_to_eof() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\n{}";
        assert_eq!(parse_response(raw).expect("parse").body, b"{}");
    }

    #[test]
    fn truncated_content_length_is_an_error() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}";
        let err = parse_response(raw).expect_err("a short body must not parse");
        assert!(err.contains("Content-Length 10"), "{err}");
    }

    #[test]
    fn truncated_chunk_is_an_error() {
        let err = decode_chunked(b"10\r\nabc").expect_err("a short chunk must not decode");
        assert!(err.contains("16 bytes"), "{err}");
    }
}
