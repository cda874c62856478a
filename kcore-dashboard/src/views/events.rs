//! The event log: the last events, then every new one as it happens (the page's script
//! follows `/events/stream`, which follows WatchEvents).

use kcore_proto::v1 as pb;
use maud::{Markup, html};

use super::event_list;

pub fn render(events: &[pb::Event]) -> Markup {
    html! {
        h1 { "Events" }
        p.muted { "Newest first. With JavaScript, new events appear here as they happen; without it, reload." }
        (event_list(events, "event-list"))
    }
}
