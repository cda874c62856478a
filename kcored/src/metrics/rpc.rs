//! RPC figures of the gRPC servers: a tower layer on each of them (the API on the unix
//! socket and on TLS, NodeAgent on its socket and on TLS) counts every call by service,
//! method and gRPC code, and times it (by the same labels) from its request to the end of
//! its response body
//! (a stream's whole life). The code comes from `grpc-status`: in the headers of a
//! trailers-only response (errors, refusals by the auth layer), else in the trailers; a
//! response dropped before its end (the client went away) is `Cancelled`.
//!
//! Every call is also [activity](crate::memory::Activity) when it comes and when it ends:
//! the daemon releases its code pages once its servers have been quiet for a while.
//!
//! Methods are labelled only when the server knows them (the set given by the gRPC layer,
//! from the descriptor sets): an unknown path is `unknown`, so clients cannot grow the
//! number of series.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::codegen::http;

/// `grpc_service` and `grpc_method`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub grpc_service: String,
    pub grpc_method: String,
}

/// `grpc_service`, `grpc_method` and `grpc_code`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub grpc_service: String,
    pub grpc_method: String,
    pub grpc_code: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn rpc_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0,
    ])
}

/// The RPC families, shared by every server's layer.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    handled: Family<CodeLabels, Counter>,
    seconds: HistogramFamily<CodeLabels>,
    known: Arc<HashSet<String>>,
    activity: crate::memory::Activity,
}

impl RpcMetrics {
    /// Families that label the methods in `known` (`/package.Service/Method`).
    pub fn new(known: HashSet<String>) -> RpcMetrics {
        RpcMetrics {
            handled: Family::default(),
            seconds: Family::new_with_constructor(rpc_histogram as fn() -> Histogram),
            known: Arc::new(known),
            activity: crate::memory::Activity::default(),
        }
    }

    /// Calls as they come and end, on every server with this layer.
    pub fn activity(&self) -> &crate::memory::Activity {
        &self.activity
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "kcore_grpc_server_handled",
            "gRPC calls completed by the daemon's servers, by service, method and code",
            self.handled.clone(),
        );
        r.register(
            "kcore_grpc_server_handling_seconds",
            "Time from a gRPC call's request to the end of its response (streams: their \
             whole life), by service, method and code",
            self.seconds.clone(),
        );
    }

    /// The layer to put on a server.
    pub fn layer(&self) -> RpcLayer {
        RpcLayer(self.clone())
    }

    fn labels(&self, path: &str) -> MethodLabels {
        match path.strip_prefix('/').and_then(|p| p.split_once('/')) {
            Some((svc, method)) if self.known.contains(path) => MethodLabels {
                grpc_service: svc.to_string(),
                grpc_method: method.to_string(),
            },
            _ => MethodLabels {
                grpc_service: "unknown".into(),
                grpc_method: "unknown".into(),
            },
        }
    }

    /// Count a finished call.
    fn finish(&self, m: &MethodLabels, code: &str, started: Instant) {
        self.activity.touch();
        let labels = CodeLabels {
            grpc_service: m.grpc_service.clone(),
            grpc_method: m.grpc_method.clone(),
            grpc_code: code.to_string(),
        };
        self.handled.get_or_create(&labels).inc();
        self.seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }

    /// How many calls of `service`/`method` ended with `code` (tests).
    #[cfg(test)]
    pub fn count(&self, service: &str, method: &str, code: &str) -> u64 {
        self.handled
            .get_or_create(&CodeLabels {
                grpc_service: service.into(),
                grpc_method: method.into(),
                grpc_code: code.into(),
            })
            .get()
    }
}

/// The name of a `grpc-status` value as Go's grpc names codes (`OK`, `NotFound`, ...),
/// which is what grpc-prometheus dashboards expect.
pub fn code_name(status: &str) -> &'static str {
    let n: i32 = status.trim().parse().unwrap_or(2);
    match tonic::Code::from_i32(n) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "Canceled",
        tonic::Code::Unknown => "Unknown",
        tonic::Code::InvalidArgument => "InvalidArgument",
        tonic::Code::DeadlineExceeded => "DeadlineExceeded",
        tonic::Code::NotFound => "NotFound",
        tonic::Code::AlreadyExists => "AlreadyExists",
        tonic::Code::PermissionDenied => "PermissionDenied",
        tonic::Code::ResourceExhausted => "ResourceExhausted",
        tonic::Code::FailedPrecondition => "FailedPrecondition",
        tonic::Code::Aborted => "Aborted",
        tonic::Code::OutOfRange => "OutOfRange",
        tonic::Code::Unimplemented => "Unimplemented",
        tonic::Code::Internal => "Internal",
        tonic::Code::Unavailable => "Unavailable",
        tonic::Code::DataLoss => "DataLoss",
        tonic::Code::Unauthenticated => "Unauthenticated",
    }
}

/// See [`RpcMetrics::layer`].
#[derive(Debug, Clone)]
pub struct RpcLayer(RpcMetrics);

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// See [`RpcLayer`].
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: RpcMetrics,
}

/// A call in flight: counted when dropped, with the code it got (none yet: `Canceled`).
struct Pending {
    metrics: RpcMetrics,
    labels: MethodLabels,
    started: Instant,
    code: Option<&'static str>,
}

impl Pending {
    /// The call ended with `code`.
    fn end(mut self, code: &'static str) {
        self.code = Some(code);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let code = self.code.unwrap_or("Canceled");
        self.metrics.finish(&self.labels, code, self.started);
    }
}

impl<S, B> tower::Service<http::Request<B>> for RpcService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.metrics.activity.touch();
        let pending = Pending {
            labels: self.metrics.labels(req.uri().path()),
            metrics: self.metrics.clone(),
            started: Instant::now(),
            code: None,
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = match fut.await {
                Ok(r) => r,
                Err(e) => {
                    pending.end("Unknown");
                    return Err(e);
                }
            };
            if let Some(status) = resp.headers().get("grpc-status") {
                // Trailers-only: the call ended here.
                pending.end(code_name(status.to_str().unwrap_or("2")));
                return Ok(resp);
            }
            if !resp.status().is_success() {
                pending.end("Unknown");
                return Ok(resp);
            }
            let (parts, body) = resp.into_parts();
            let body = Observed {
                inner: body,
                pending: Some(pending),
            };
            Ok(http::Response::from_parts(
                parts,
                tonic::body::Body::new(body),
            ))
        })
    }
}

/// A response body that records the call's code from its trailers when it ends.
struct Observed {
    inner: tonic::body::Body,
    pending: Option<Pending>,
}

impl Body for Observed {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(t) = f.trailers_ref()
                    && let Some(p) = self.pending.take()
                {
                    p.end(
                        t.get("grpc-status")
                            .and_then(|v| v.to_str().ok())
                            .map_or("Unknown", code_name),
                    );
                }
            }
            Some(Err(_)) | None => {
                if let Some(p) = self.pending.take() {
                    p.end(if frame.is_none() { "OK" } else { "Unknown" });
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_prometheus_names_them() {
        assert_eq!(code_name("0"), "OK");
        assert_eq!(code_name("5"), "NotFound");
        assert_eq!(code_name("16"), "Unauthenticated");
        assert_eq!(code_name("junk"), "Unknown");
    }

    #[test]
    fn unknown_paths_do_not_make_series() {
        let m = RpcMetrics::new(["/kcore.v1.KcoreService/ListVMs".to_string()].into());
        let l = m.labels("/kcore.v1.KcoreService/ListVMs");
        assert_eq!(
            (l.grpc_service.as_str(), l.grpc_method.as_str()),
            ("kcore.v1.KcoreService", "ListVMs")
        );
        let l = m.labels("/kcore.v1.KcoreService/Nope");
        assert_eq!(l.grpc_method, "unknown");
        m.finish(&l, "Unimplemented", Instant::now());
        assert_eq!(m.count("unknown", "unknown", "Unimplemented"), 1);
    }

    #[tokio::test]
    async fn a_call_is_activity_when_it_comes_and_when_it_ends() {
        use tower::{Layer, Service};
        let m = RpcMetrics::new(["/kcore.v1.KcoreService/ListVMs".to_string()].into());
        let before = m.activity().count();
        let mut svc = m
            .layer()
            .layer(tower::service_fn(|_req: http::Request<()>| async {
                let mut r = http::Response::new(tonic::body::Body::empty());
                r.headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static("0"));
                Ok::<_, std::convert::Infallible>(r)
            }));
        let req = http::Request::builder()
            .uri("/kcore.v1.KcoreService/ListVMs")
            .body(())
            .expect("request");
        let fut = svc.call(req);
        assert_eq!(m.activity().count(), before + 1, "when it comes");
        fut.await.expect("response");
        assert_eq!(m.activity().count(), before + 2, "when it ends");
        assert_eq!(m.count("kcore.v1.KcoreService", "ListVMs", "OK"), 1);
    }
}
