//! The HTTP side: routes (every one a GET), the read-only guard, the handlers that fetch
//! from kcored and render a view, the live event stream, and the static assets.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures::{Stream, StreamExt};
use kcore_proto::v1 as pb;
use maud::Markup;

use crate::api::Api;
use crate::error::DashError;
use crate::views::{self, Chrome};

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub api: Api,
}

type Shared = State<Arc<AppState>>;

const CSS: &str = include_str!("../assets/dashboard.css");
const JS: &str = include_str!("../assets/dashboard.js");

/// Every route of the dashboard. Only GET (and HEAD) is served, on every path.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/vms", get(vm_list))
        .route("/vms/{name}", get(vm_detail))
        .route("/nodes", get(nodes))
        .route("/networks", get(networks))
        .route("/storage", get(storage))
        .route("/templates", get(templates))
        .route("/events", get(events))
        .route("/events/stream", get(event_stream))
        .route("/static/dashboard.css", get(css))
        .route("/static/dashboard.js", get(js))
        .fallback(not_found)
        .layer(middleware::from_fn(read_only))
        .with_state(state)
}

/// Read-only in every sense: any method but GET and HEAD is 405 on every path, before a
/// handler (or kcored) is reached.
async fn read_only(req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        let mut resp = next.run(req).await;
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; style-src 'self' 'unsafe-inline'; form-action 'self'; \
                 frame-ancestors 'none'",
            ),
        );
        return resp;
    }
    tracing::info!(method = %req.method(), path = req.uri().path(), "refused: read-only");
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "GET, HEAD")],
        "405 Method Not Allowed: the kcore dashboard is read-only\n",
    )
        .into_response()
}

fn chrome(s: &AppState) -> Chrome<'_> {
    Chrome {
        identity: s.api.identity(),
        endpoint: s.api.endpoint(),
    }
}

/// A page, or its error page with a status that says what happened.
fn respond(s: &AppState, r: Result<(String, &str, bool, Markup), DashError>) -> Response {
    match r {
        Ok((title, active, live, body)) => {
            Html(views::page(&chrome(s), &title, active, live, body).into_string()).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "page failed");
            let status = match e.kind() {
                crate::error::Kind::NotFound => StatusCode::NOT_FOUND,
                crate::error::Kind::Refused => StatusCode::BAD_GATEWAY,
                crate::error::Kind::Unreachable => StatusCode::SERVICE_UNAVAILABLE,
                crate::error::Kind::Failed => StatusCode::BAD_GATEWAY,
            };
            (
                status,
                Html(views::error_page(&chrome(s), &e).into_string()),
            )
                .into_response()
        }
    }
}

async fn list_vms(api: &Api) -> Result<Vec<pb::Vm>, DashError> {
    Ok(api
        .call(|mut c| async move { c.list_v_ms(pb::ListVMsRequest::default()).await })
        .await?
        .vms)
}

async fn list_nodes(api: &Api) -> Result<Vec<pb::Node>, DashError> {
    Ok(api
        .call(|mut c| async move { c.list_nodes(pb::ListNodesRequest {}).await })
        .await?
        .nodes)
}

/// The last `history` events (of `vm`, when given), oldest first.
async fn recent_events(api: &Api, vm: &str, history: u32) -> Result<Vec<pb::Event>, DashError> {
    let client = api.raw().await?;
    let req = pb::WatchEventsRequest {
        follow: false,
        history,
        vm: vm.to_string(),
    };
    let read = async {
        let mut stream = client
            .api()
            .watch_events(req)
            .await
            .map_err(|s| DashError::Api(client.error(s)))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(ev) = stream
            .message()
            .await
            .map_err(|s| DashError::Api(client.error(s)))?
        {
            out.push(ev);
        }
        Ok(out)
    };
    tokio::time::timeout(crate::api::CALL_TIMEOUT, read)
        .await
        .map_err(|_| DashError::Timeout(crate::api::CALL_TIMEOUT.as_secs()))?
}

async fn overview(State(s): Shared) -> Response {
    let r = async {
        let (nodes, vms, events) = tokio::try_join!(
            list_nodes(&s.api),
            list_vms(&s.api),
            recent_events(&s.api, "", 15)
        )?;
        Ok((
            "Cluster".to_string(),
            "/",
            true,
            views::overview::render(&nodes, &vms, &events),
        ))
    }
    .await;
    respond(&s, r)
}

async fn vm_list(State(s): Shared, Query(q): Query<views::vms::ListQuery>) -> Response {
    let r = async {
        let (nodes, vms) = tokio::try_join!(list_nodes(&s.api), list_vms(&s.api))?;
        let body = views::vms::render(&vms, &nodes, &q, chrono::Utc::now());
        Ok(("VMs".to_string(), "/vms", true, body))
    }
    .await;
    respond(&s, r)
}

async fn vm_detail(State(s): Shared, Path(name): Path<String>) -> Response {
    let r = async {
        let n = name.clone();
        let vm = s
            .api
            .call(|mut c| async move { c.get_vm(pb::GetVmRequest { name: n }).await })
            .await?;
        let (n1, n2) = (name.clone(), name.clone());
        let (stats, console, events) = tokio::join!(
            s.api.call(|mut c| async move {
                c.get_vm_stats(pb::GetVmStatsRequest {
                    name: n1,
                    since_seconds: 3600,
                })
                .await
            }),
            s.api.call(|mut c| async move {
                c.get_console_log(pb::GetConsoleLogRequest { vm: n2 }).await
            }),
            recent_events(&s.api, &name, 20),
        );
        let d = views::vm::Detail {
            vm,
            stats: stats.map_err(|e| e.to_string()),
            console: console.map(|c| c.data).map_err(|e| e.to_string()),
            events: events?,
        };
        Ok((
            name.clone(),
            "/vms",
            true,
            views::vm::render(&d, chrono::Utc::now()),
        ))
    }
    .await;
    respond(&s, r)
}

async fn nodes(State(s): Shared) -> Response {
    let r = async {
        let (nodes, vms) = tokio::try_join!(list_nodes(&s.api), list_vms(&s.api))?;
        Ok((
            "Nodes".to_string(),
            "/nodes",
            true,
            views::node::render(&nodes, &vms),
        ))
    }
    .await;
    respond(&s, r)
}

async fn networks(State(s): Shared) -> Response {
    let r = async {
        let (nets, vms) = tokio::try_join!(
            async {
                Ok::<_, DashError>(
                        s.api
                            .call(|mut c| async move {
                                c.list_networks(pb::ListNetworksRequest {}).await
                            })
                            .await?
                            .networks,
                    )
            },
            list_vms(&s.api)
        )?;
        Ok((
            "Networks".to_string(),
            "/networks",
            true,
            views::network::render(&nets, &vms),
        ))
    }
    .await;
    respond(&s, r)
}

async fn storage(State(s): Shared) -> Response {
    let r = async {
        let (pools, images, volumes) = tokio::try_join!(
            s.api
                .call(|mut c| async move { c.list_pools(pb::ListPoolsRequest::default()).await }),
            s.api
                .call(|mut c| async move { c.list_images(pb::ListImagesRequest::default()).await }),
            s.api.call(
                |mut c| async move { c.list_volumes(pb::ListVolumesRequest::default()).await }
            ),
        )?;
        let body = views::storage::render(&pools.pools, &images.images, &volumes.volumes);
        Ok(("Storage".to_string(), "/storage", true, body))
    }
    .await;
    respond(&s, r)
}

async fn templates(State(s): Shared) -> Response {
    let r = async {
        let list = s
            .api
            .call(
                |mut c| async move { c.list_templates(pb::ListTemplatesRequest::default()).await },
            )
            .await?;
        let body = views::templates::render(&list.templates, chrono::Utc::now());
        Ok(("Templates".to_string(), "/templates", true, body))
    }
    .await;
    respond(&s, r)
}

async fn events(State(s): Shared) -> Response {
    let r = async {
        let events = recent_events(&s.api, "", 100).await?;
        Ok((
            "Events".to_string(),
            "/events",
            false,
            views::events::render(&events),
        ))
    }
    .await;
    respond(&s, r)
}

/// Server-sent events: each kcored event as it happens (WatchEvents with follow), as JSON
/// with the event's HTML list item; an `error` event when the stream cannot be had.
async fn event_stream(State(s): Shared) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = async_stream(s);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn async_stream(s: Arc<AppState>) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let opened = async move {
        let client = s.api.raw().await?;
        let req = pb::WatchEventsRequest {
            follow: true,
            history: 0,
            vm: String::new(),
        };
        let stream = client
            .api()
            .watch_events(req)
            .await
            .map_err(|st| DashError::Api(client.error(st)))?
            .into_inner();
        Ok::<_, DashError>(stream)
    };
    futures::stream::once(opened).flat_map(|r| match r {
        Ok(stream) => stream
            .map(|ev| {
                Ok(match ev {
                    Ok(e) => {
                        let data = serde_json::json!({
                            "kind": e.kind, "vm": e.vm_name, "node": e.node,
                            "message": e.message, "at": e.at,
                            "html": views::event_item(&e).into_string(),
                        });
                        SseEvent::default().event("kcore").data(data.to_string())
                    }
                    Err(st) => SseEvent::default().event("error").data(st.message()),
                })
            })
            .boxed(),
        Err(e) => futures::stream::once(async move {
            Ok(SseEvent::default().event("error").data(e.to_string()))
        })
        .boxed(),
    })
}

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
}

async fn not_found(State(s): Shared, req: Request) -> Response {
    respond(
        &s,
        Err(DashError::NotFound(format!(
            "no page at {}",
            req.uri().path()
        ))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// A dashboard whose kcored is nowhere.
    fn away() -> Router {
        let r = kcore_client::resolve(
            Some("unix:///nonexistent/kcore.sock"),
            &|_| None,
            std::path::Path::new("/nonexistent"),
            None,
        )
        .expect("resolve");
        router(Arc::new(AppState { api: Api::new(r) }))
    }

    async fn send(method: &str, path: &str) -> (StatusCode, HeaderValue, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .expect("request");
        let resp = away().oneshot(req).await.expect("response");
        let allow = resp
            .headers()
            .get(header::ALLOW)
            .cloned()
            .unwrap_or(HeaderValue::from_static(""));
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, allow, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn every_other_method_is_405_on_every_path() {
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            for path in [
                "/",
                "/vms",
                "/vms/web",
                "/events/stream",
                "/static/dashboard.js",
                "/x/y",
            ] {
                let (status, allow, _) = send(method, path).await;
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_eq!(allow, "GET, HEAD");
            }
        }
    }

    #[tokio::test]
    async fn assets_need_no_kcored_and_pages_say_it_is_away() {
        let (status, _, css) = send("GET", "/static/dashboard.css").await;
        assert_eq!(status, StatusCode::OK);
        assert!(css.contains("@media"));
        let (status, _, page) = send("GET", "/vms").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{page}");
        assert!(page.contains("kcored cannot be reached"), "{page}");
        assert!(page.contains("/nonexistent/kcore.sock"), "{page}");
        let (status, _, _) = send("GET", "/no/such/page").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
