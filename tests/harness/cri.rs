//! A minimal client of the Kubernetes Container Runtime Interface, to drive containerd's real CRI plugin
//! the way a kubelet does: gRPC (HTTP/2 over the daemon's unix socket, `h2`) carrying the messages of
//! `runtime.v1` (k8s.io/cri-api, `pkg/apis/runtime/v1/api.proto`), hand-written below with only the fields
//! these tests set or read; field numbers are the proto's. Unknown fields in answers are skipped by
//! protobuf's rules, so the subset is safe.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// How long one call may take before the test fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// `NamespaceMode` of the proto.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum NamespaceMode {
    /// Shared by the pod's containers.
    Pod = 0,
    /// The container's own.
    Container = 1,
    /// The node's (host network, host PID).
    Node = 2,
    /// Another container's.
    Target = 3,
}

/// `ContainerState` of the proto.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ContainerState {
    Created = 0,
    Running = 1,
    Exited = 2,
    Unknown = 3,
}

/// `PodSandboxState` of the proto.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PodSandboxState {
    Ready = 0,
    NotReady = 1,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionRequest {
    #[prost(string, tag = "1")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionResponse {
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(string, tag = "2")]
    pub runtime_name: String,
    #[prost(string, tag = "3")]
    pub runtime_version: String,
    #[prost(string, tag = "4")]
    pub runtime_api_version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamespaceOption {
    #[prost(enumeration = "NamespaceMode", tag = "1")]
    pub network: i32,
    #[prost(enumeration = "NamespaceMode", tag = "2")]
    pub pid: i32,
    #[prost(enumeration = "NamespaceMode", tag = "3")]
    pub ipc: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxSandboxSecurityContext {
    #[prost(message, optional, tag = "1")]
    pub namespace_options: Option<NamespaceOption>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxConfig {
    #[prost(string, tag = "1")]
    pub cgroup_parent: String,
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxSandboxSecurityContext>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub uid: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(string, tag = "2")]
    pub hostname: String,
    #[prost(string, tag = "3")]
    pub log_directory: String,
    #[prost(btree_map = "string, string", tag = "6")]
    pub labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "7")]
    pub annotations: BTreeMap<String, String>,
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
    #[prost(string, tag = "2")]
    pub runtime_handler: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxResponse {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// The request of StopPodSandbox, RemovePodSandbox and PodSandboxStatus (field 1 in each).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxIdRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// An empty answer (StopPodSandboxResponse, StartContainerResponse, …).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxStatusNamespace {
    #[prost(message, optional, tag = "2")]
    pub options: Option<NamespaceOption>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxStatus {
    #[prost(message, optional, tag = "1")]
    pub namespaces: Option<LinuxPodSandboxStatusNamespace>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatus {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(enumeration = "PodSandboxState", tag = "3")]
    pub state: i32,
    #[prost(message, optional, tag = "6")]
    pub linux: Option<LinuxPodSandboxStatus>,
    #[prost(btree_map = "string, string", tag = "7")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<PodSandboxStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageSpec {
    #[prost(string, tag = "1")]
    pub image: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint32, tag = "2")]
    pub attempt: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainerSecurityContext {
    #[prost(message, optional, tag = "3")]
    pub namespace_options: Option<NamespaceOption>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainerConfig {
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxContainerSecurityContext>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ContainerMetadata>,
    #[prost(message, optional, tag = "2")]
    pub image: Option<ImageSpec>,
    #[prost(string, repeated, tag = "3")]
    pub command: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub args: Vec<String>,
    #[prost(btree_map = "string, string", tag = "9")]
    pub labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "10")]
    pub annotations: BTreeMap<String, String>,
    #[prost(string, tag = "11")]
    pub log_path: String,
    #[prost(message, optional, tag = "15")]
    pub linux: Option<LinuxContainerConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    #[prost(message, optional, tag = "2")]
    pub config: Option<ContainerConfig>,
    #[prost(message, optional, tag = "3")]
    pub sandbox_config: Option<PodSandboxConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerResponse {
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// The request of StartContainer, RemoveContainer and ContainerStatus (field 1 in each).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerIdRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatus {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<ContainerMetadata>,
    #[prost(enumeration = "ContainerState", tag = "3")]
    pub state: i32,
    #[prost(int32, tag = "7")]
    pub exit_code: i32,
    #[prost(string, tag = "10")]
    pub reason: String,
    #[prost(btree_map = "string, string", tag = "12")]
    pub labels: BTreeMap<String, String>,
    #[prost(string, tag = "15")]
    pub log_path: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<ContainerStatus>,
}

/// A connection to a CRI runtime service on a unix socket.
pub struct CriClient {
    rt: tokio::runtime::Runtime,
    send: h2::client::SendRequest<Bytes>,
    /// `runtime.v1`, or `runtime.v1alpha2` where only that answers.
    package: &'static str,
}

impl CriClient {
    /// Connects (HTTP/2 with prior knowledge, as gRPC does) and asks `Version`, in `runtime.v1` first and
    /// `runtime.v1alpha2` if v1 is unimplemented.
    pub fn connect(socket: &Path) -> Result<(CriClient, VersionResponse), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let send = rt.block_on(async {
            let io = tokio::net::UnixStream::connect(socket)
                .await
                .map_err(|e| format!("connect {}: {e}", socket.display()))?;
            let (send, conn) = h2::client::handshake(io).await.map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            // Runs whenever the runtime is driven, that is during each call's block_on.
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok::<_, String>(send)
        })?;
        let mut client = CriClient { rt, send, package: "runtime.v1" };
        let request = VersionRequest { version: "v1".into() };
        let version = match client.call::<_, VersionResponse>("RuntimeService", "Version", &request) {
            Ok(v) => v,
            Err(e) if e.starts_with("grpc-status 12") => {
                client.package = "runtime.v1alpha2";
                client.call("RuntimeService", "Version", &request)?
            }
            Err(e) => return Err(e),
        };
        Ok((client, version))
    }

    /// The proto package the runtime answered in.
    pub fn package(&self) -> &'static str {
        self.package
    }

    /// One unary call of `/PACKAGE.SERVICE/METHOD`; an error names the gRPC status and message.
    pub fn call<Q: prost::Message, A: prost::Message + Default>(
        &mut self,
        service: &str,
        method: &str,
        request: &Q,
    ) -> Result<A, String> {
        let path = format!("/{}.{service}/{method}", self.package);
        let send = self.send.clone();
        let body = self
            .rt
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, unary(send, &path, request.encode_to_vec())).await })
            .map_err(|_| format!("{path}: no answer in {CALL_TIMEOUT:?}"))?
            .map_err(|e| format!("{path}: {e}"))?;
        A::decode(body).map_err(|e| format!("{path}: decode the answer: {e}"))
    }

    /// `RuntimeService` call.
    #[track_caller]
    pub fn runtime<Q: prost::Message, A: prost::Message + Default>(&mut self, method: &str, request: &Q) -> A {
        self.call("RuntimeService", method, request).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// gRPC over one HTTP/2 stream: the request as one length-prefixed message, the answer's message and
/// its `grpc-status` (in the trailers, or in the headers of a trailers-only answer).
async fn unary(send: h2::client::SendRequest<Bytes>, path: &str, message: Vec<u8>) -> Result<Bytes, String> {
    let mut send = send.ready().await.map_err(|e| format!("connection: {e}"))?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(|e| format!("request: {e}"))?;
    let (answer, mut stream) = send.send_request(request, false).map_err(|e| format!("send: {e}"))?;
    let len = u32::try_from(message.len()).map_err(|_| "message over 4 GiB")?;
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0); // not compressed
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&message);
    stream.send_data(Bytes::from(framed), true).map_err(|e| format!("send the message: {e}"))?;

    let answer = answer.await.map_err(|e| format!("answer: {e}"))?;
    let (head, mut body) = answer.into_parts();
    if head.status != http::StatusCode::OK {
        return Err(format!("HTTP status {}", head.status));
    }
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("read the answer: {e}"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.map_err(|e| format!("read the trailers: {e}"))?.unwrap_or_default();
    let field = |name: &str| {
        trailers
            .get(name)
            .or_else(|| head.headers.get(name))
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let status = field("grpc-status").ok_or("no grpc-status in the answer")?;
    if status != "0" {
        let message = percent_decode(&field("grpc-message").unwrap_or_default());
        return Err(format!("grpc-status {status}: {message}"));
    }
    let mut data = data.freeze();
    if data.len() < 5 {
        return Err(format!("an answer of {} bytes has no message", data.len()));
    }
    let compressed = data.get_u8();
    let len = data.get_u32() as usize;
    if compressed != 0 || data.len() != len {
        return Err(format!("unexpected framing: compressed {compressed}, length {len} of {} bytes", data.len()));
    }
    Ok(data)
}

/// `grpc-message` is percent-encoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
