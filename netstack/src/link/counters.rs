//! Traffic counters of links, from `/proc/net/dev`: one read gives every interface of the
//! reading process's network namespace (unlike `/sys/class/net`, whose view is the
//! namespace sysfs was mounted in), and it never blocks on a device.

use std::collections::HashMap;
use std::path::Path;

use crate::NetError;

/// What a link sent and received, as the host counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

const PROC_NET_DEV: &str = "/proc/net/dev";

/// Every link's counters, by name.
pub fn read_counters() -> Result<HashMap<String, LinkCounters>, NetError> {
    let text = std::fs::read_to_string(PROC_NET_DEV).map_err(|source| NetError::Io {
        op: "read",
        path: Path::new(PROC_NET_DEV).to_path_buf(),
        source,
    })?;
    Ok(parse_proc_net_dev(&text))
}

/// Parse `/proc/net/dev`: two header lines, then `name: rx_bytes rx_packets errs drop
/// fifo frame compressed multicast tx_bytes tx_packets ...`. Lines that do not fit are
/// skipped.
pub fn parse_proc_net_dev(text: &str) -> HashMap<String, LinkCounters> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if f.len() < 10 {
                return None;
            }
            Some((
                name.trim().to_string(),
                LinkCounters {
                    rx_bytes: f[0],
                    rx_packets: f[1],
                    tx_bytes: f[8],
                    tx_packets: f[9],
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
            lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n\
            ktap-abc: 5 1 0 0 0 0 0 0 700 7 0 0 0 0 0 0\n\
            broken: x y\n";
        let c = parse_proc_net_dev(text);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c["ktap-abc"],
            LinkCounters {
                rx_bytes: 5,
                rx_packets: 1,
                tx_bytes: 700,
                tx_packets: 7
            }
        );
        assert_eq!(c["lo"].rx_bytes, 1000);
    }

    #[test]
    fn reads_this_namespace() {
        let c = read_counters().expect("/proc/net/dev");
        assert!(c.contains_key("lo"), "{c:?}");
    }
}
