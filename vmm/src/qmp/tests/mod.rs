//! Tests of the QMP client: a scripted fake peer for the protocol corner cases and the
//! bounds (line length, event channel), property tests of the reader on arbitrary input,
//! and one round trip against a real QEMU.

mod bounds;
mod fake_peer;
mod peer;
mod reader_props;
mod real_qemu;

use std::future::Future;
use std::time::Duration;

/// Bound a whole test so a bug shows up as a failure, never as a hung test run.
async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .expect("test did not finish within 20 s")
}
