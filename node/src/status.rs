//! `ringdb status`: the cluster as one node sees it, printed like `nodetool status`.
//!
//! The tool is a CQL client: it reads `system_views.cluster_status` from the node it is pointed at
//! (every node that node knows through gossip, itself included, with liveness from its failure
//! detector) and prints one table per datacenter:
//!
//! ```text
//! Datacenter: dc1
//! ===============
//! Status=Up/Down
//! |/ State=Normal/Leaving/Joining/Moving
//! --  Address    Load      Tokens  Owns    Host ID                               Rack
//! UN  127.0.0.1  1.21 MiB  16      34.1%   5c0f5c3e-8a1e-4a35-9d6b-2f6a8f1d2e3c  rack1
//! ```
//!
//! "Owns" is raw token ownership: the share of the token space between each of the node's tokens
//! and the token before it on the ring, counted over the nodes that own tokens (`NORMAL`,
//! `LEAVING`, or stopped with their tokens: `SHUTDOWN`). Effective ownership with replication
//! depends on a keyspace and comes with the coordinator.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, Context};
use ringdb_cql::client::{Client, ClientOptions, QueryOptions, Rows, NO_VALUES};
use ringdb_cql::types::CqlValue;
use serde::Serialize;

/// One node as the queried node sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatusRow {
    /// Internode address.
    pub address: IpAddr,
    /// Internode port.
    pub storage_port: u16,
    /// Datacenter (`?` until gossip told it).
    pub dc: String,
    /// Rack (`?` until gossip told it).
    pub rack: String,
    /// Gossip status (`NORMAL`, `JOINING`, `SHUTDOWN`, ...).
    pub gossip_status: String,
    /// Whether the queried node's failure detector holds it up.
    pub up: bool,
    /// Two letters as in nodetool: `U`/`D`, then `N`/`L`/`J`/`M` (or `?`).
    pub state: String,
    /// Bytes on disk it reported, if any.
    pub load: Option<i64>,
    /// Its vnode tokens.
    pub tokens: Vec<i64>,
    /// Share of the token ring it owns, 0..=1, when it owns tokens.
    pub owns: Option<f64>,
    /// Host id.
    pub host_id: Option<String>,
    /// Gossip generation.
    pub generation: i64,
    /// Heartbeat version.
    pub heartbeat: i64,
    /// Schema version.
    pub schema_version: Option<String>,
    /// CQL address `ip:port`.
    pub native_address: Option<String>,
    /// Release version.
    pub release_version: Option<String>,
    /// True for the node that answered.
    pub local: bool,
}

/// Reads the cluster status from the node at `target` (`HOST[:PORT]`, port 9042 by default).
pub async fn fetch(target: &str, timeout: Duration) -> anyhow::Result<Vec<NodeStatusRow>> {
    let addr = cql_target(target);
    let options = ClientOptions {
        connect_timeout: timeout,
        ..ClientOptions::default()
    };
    let client = Client::connect(addr.as_str(), options)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let result = tokio::time::timeout(
        timeout,
        client.query_all(
            "SELECT * FROM system_views.cluster_status",
            NO_VALUES,
            &QueryOptions::default(),
        ),
    )
    .await
    .map_err(|_| anyhow!("{addr} did not answer within {timeout:?}"))?
    .with_context(|| format!("reading system_views.cluster_status from {addr}"))?;
    let rows = result
        .into_rows()
        .ok_or_else(|| anyhow!("{addr} returned no rows for system_views.cluster_status"))?;
    let mut out = parse_cluster_status(&rows);
    fill_ownership(&mut out);
    Ok(out)
}

/// `system_views.cluster_status` rows as read by a client (rows without a readable `peer` are
/// skipped). Ownership is left for [`fill_ownership`].
pub fn parse_cluster_status(rows: &Rows) -> Vec<NodeStatusRow> {
    rows.rows
        .iter()
        .filter_map(|row| {
            let get = |column: &str| cell(rows, row, column);
            let up = boolean(get("up")).unwrap_or(false);
            let gossip_status = text(get("status")).unwrap_or_else(|| "UNKNOWN".into());
            let native_address = match (inet(get("native_address")), bigint(get("native_port"))) {
                (Some(ip), Some(port)) => {
                    Some(std::net::SocketAddr::new(ip, port as u16).to_string())
                }
                _ => None,
            };
            Some(NodeStatusRow {
                address: inet(get("peer"))?,
                storage_port: bigint(get("storage_port")).unwrap_or(0) as u16,
                dc: text(get("data_center")).unwrap_or_else(|| "?".into()),
                rack: text(get("rack")).unwrap_or_else(|| "?".into()),
                state: state_code(up, &gossip_status),
                gossip_status,
                up,
                load: bigint(get("load")),
                tokens: text_set(get("tokens"))
                    .iter()
                    .filter_map(|t| t.parse().ok())
                    .collect(),
                owns: None,
                host_id: uuid(get("host_id")),
                generation: bigint(get("generation")).unwrap_or(0),
                heartbeat: bigint(get("heartbeat")).unwrap_or(0),
                schema_version: uuid(get("schema_version")),
                native_address,
                release_version: text(get("release_version")),
                local: boolean(get("local")).unwrap_or(false),
            })
        })
        .collect()
}

/// Reads a column of a result row by name.
pub(crate) fn cell<'a>(
    rows: &Rows,
    row: &'a [Option<CqlValue>],
    column: &str,
) -> Option<&'a CqlValue> {
    rows.column_index(column)
        .and_then(|i| row.get(i))
        .and_then(Option::as_ref)
}

/// A value as text (text as is, anything else rendered as CQL literal).
pub(crate) fn text(value: Option<&CqlValue>) -> Option<String> {
    match value? {
        CqlValue::Text(s) | CqlValue::Ascii(s) => Some(s.clone()),
        other => Some(other.render()),
    }
}

/// An `inet` (or its text form).
pub(crate) fn inet(value: Option<&CqlValue>) -> Option<IpAddr> {
    match value? {
        CqlValue::Inet(ip) => Some(*ip),
        CqlValue::Text(s) | CqlValue::Ascii(s) => s.parse().ok(),
        _ => None,
    }
}

/// Any integer column as `i64`.
pub(crate) fn bigint(value: Option<&CqlValue>) -> Option<i64> {
    match value? {
        CqlValue::BigInt(v) | CqlValue::Counter(v) | CqlValue::Timestamp(v) => Some(*v),
        CqlValue::Int(v) => Some(i64::from(*v)),
        _ => None,
    }
}

/// A boolean column.
pub(crate) fn boolean(value: Option<&CqlValue>) -> Option<bool> {
    match value? {
        CqlValue::Boolean(b) => Some(*b),
        _ => None,
    }
}

/// A uuid column in its usual text form.
pub(crate) fn uuid(value: Option<&CqlValue>) -> Option<String> {
    match value? {
        CqlValue::Uuid(b) | CqlValue::Timeuuid(b) => Some(uuid::Uuid::from_bytes(*b).to_string()),
        other => text(Some(other)),
    }
}

/// A set or list column as text items.
pub(crate) fn text_set(value: Option<&CqlValue>) -> Vec<String> {
    match value {
        Some(CqlValue::Set(items) | CqlValue::List(items)) => {
            items.iter().filter_map(|v| text(Some(v))).collect()
        }
        _ => Vec::new(),
    }
}

/// `HOST[:PORT]` with the CQL port defaulting to 9042 (`[v6]:port` or a bare IPv6 address too).
pub fn cql_target(target: &str) -> String {
    let t = target.trim();
    if t.parse::<std::net::SocketAddr>().is_ok() {
        return t.to_string();
    }
    match t.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:9042"),
        Ok(ip) => format!("{ip}:9042"),
        Err(_) if t.contains(':') => t.to_string(),
        Err(_) => format!("{t}:9042"),
    }
}

/// nodetool's two letters: up or down, then the ring state.
pub fn state_code(up: bool, gossip_status: &str) -> String {
    let s = match gossip_status {
        "NORMAL" | "SHUTDOWN" => 'N',
        "LEAVING" | "LEFT" => 'L',
        "JOINING" | "BOOT" => 'J',
        "MOVING" => 'M',
        _ => '?',
    };
    format!("{}{}", if up { 'U' } else { 'D' }, s)
}

/// True when a node's tokens are part of the ring.
fn owns_tokens(gossip_status: &str) -> bool {
    matches!(gossip_status, "NORMAL" | "LEAVING" | "SHUTDOWN")
}

/// Raw token ownership of each node that owns tokens.
pub fn fill_ownership(rows: &mut [NodeStatusRow]) {
    let mut ring: Vec<(i64, usize)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| owns_tokens(&r.gossip_status))
        .flat_map(|(i, r)| r.tokens.iter().map(move |t| (*t, i)))
        .collect();
    ring.sort();
    ring.dedup_by_key(|(t, _)| *t);
    if ring.is_empty() {
        return;
    }
    let mut share = vec![0f64; rows.len()];
    const SPACE: f64 = 18_446_744_073_709_551_616.0; // 2^64
    for (i, (token, owner)) in ring.iter().enumerate() {
        let prev = if i == 0 {
            ring[ring.len() - 1].0
        } else {
            ring[i - 1].0
        };
        // Each token owns (prev, token]; the first wraps around the ring. One token owns it all.
        let width = if ring.len() == 1 {
            SPACE
        } else {
            (*token as i128 - prev as i128).rem_euclid(1i128 << 64) as f64
        };
        share[*owner] += width / SPACE;
    }
    for (i, row) in rows.iter_mut().enumerate() {
        if owns_tokens(&row.gossip_status) && !row.tokens.is_empty() {
            row.owns = Some(share[i]);
        }
    }
}

/// Bytes as nodetool shows them.
pub fn human_bytes(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

/// The per-datacenter tables.
pub fn render_table(rows: &[NodeStatusRow]) -> String {
    let mut by_dc: BTreeMap<&str, Vec<&NodeStatusRow>> = BTreeMap::new();
    for r in rows {
        by_dc.entry(r.dc.as_str()).or_default().push(r);
    }
    let mut out = String::new();
    for (dc, mut nodes) in by_dc {
        nodes.sort_by_key(|r| (r.address, r.storage_port));
        let title = format!("Datacenter: {dc}");
        out.push_str(&title);
        out.push('\n');
        out.push_str(&"=".repeat(title.len()));
        out.push('\n');
        out.push_str("Status=Up/Down\n|/ State=Normal/Leaving/Joining/Moving\n");
        let cells: Vec<[String; 7]> = nodes
            .iter()
            .map(|r| {
                [
                    r.state.clone(),
                    r.address.to_string(),
                    r.load.map(human_bytes).unwrap_or_else(|| "?".into()),
                    r.tokens.len().to_string(),
                    r.owns
                        .map(|o| format!("{:.1}%", o * 100.0))
                        .unwrap_or_else(|| "?".into()),
                    r.host_id.clone().unwrap_or_else(|| "?".into()),
                    r.rack.clone(),
                ]
            })
            .collect();
        let header = ["--", "Address", "Load", "Tokens", "Owns", "Host ID", "Rack"];
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for c in &cells {
            for (w, v) in widths.iter_mut().zip(c.iter()) {
                *w = (*w).max(v.len());
            }
        }
        let line = |vals: Vec<&str>| {
            let mut l = String::new();
            for (i, (v, w)) in vals.iter().zip(&widths).enumerate() {
                if i + 1 == vals.len() {
                    l.push_str(v);
                } else {
                    l.push_str(&format!("{v:<w$}  "));
                }
            }
            l.trim_end().to_string() + "\n"
        };
        out.push_str(&line(header.to_vec()));
        for c in &cells {
            out.push_str(&line(c.iter().map(String::as_str).collect()));
        }
        out.push('\n');
    }
    out
}

/// The rows as JSON: `{"datacenters": {"dc1": [ {...}, ... ]}}`.
pub fn render_json(rows: &[NodeStatusRow]) -> anyhow::Result<String> {
    let mut by_dc: BTreeMap<&str, Vec<&NodeStatusRow>> = BTreeMap::new();
    for r in rows {
        by_dc.entry(r.dc.as_str()).or_default().push(r);
    }
    for nodes in by_dc.values_mut() {
        nodes.sort_by_key(|r| (r.address, r.storage_port));
    }
    #[derive(Serialize)]
    struct Out<'a> {
        datacenters: BTreeMap<&'a str, Vec<&'a NodeStatusRow>>,
    }
    Ok(serde_json::to_string_pretty(&Out { datacenters: by_dc })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ip: u8, status: &str, up: bool, tokens: Vec<i64>) -> NodeStatusRow {
        NodeStatusRow {
            address: IpAddr::from([127, 0, 0, ip]),
            storage_port: 7000,
            dc: "dc1".into(),
            rack: "rack1".into(),
            gossip_status: status.into(),
            up,
            state: state_code(up, status),
            load: Some(2048),
            tokens,
            owns: None,
            host_id: Some(format!("00000000-0000-0000-0000-00000000000{ip}")),
            generation: 1,
            heartbeat: 2,
            schema_version: None,
            native_address: None,
            release_version: None,
            local: ip == 1,
        }
    }

    #[test]
    fn ownership_sums_to_one_and_splits_by_token_gaps() {
        // Tokens at -2^62, 0, 2^62, 2^63-1 split the ring in quarters (almost).
        let q = 1i64 << 62;
        let mut rows = vec![
            row(1, "NORMAL", true, vec![-q, q]),
            row(2, "NORMAL", false, vec![0, i64::MAX]),
            row(3, "JOINING", true, vec![5]),
        ];
        fill_ownership(&mut rows);
        let a = rows[0].owns.unwrap();
        let b = rows[1].owns.unwrap();
        assert!((a + b - 1.0).abs() < 1e-9, "{a} + {b}");
        assert!((a - 0.5).abs() < 1e-6, "{a}");
        assert_eq!(rows[2].owns, None, "joining tokens are not owned yet");
        let single = &mut [row(1, "NORMAL", true, vec![42])];
        fill_ownership(single);
        assert_eq!(single[0].owns, Some(1.0));
    }

    #[test]
    fn state_codes_and_table() {
        assert_eq!(state_code(true, "NORMAL"), "UN");
        assert_eq!(state_code(false, "SHUTDOWN"), "DN");
        assert_eq!(state_code(true, "JOINING"), "UJ");
        assert_eq!(state_code(true, "LEAVING"), "UL");
        let mut rows = vec![
            row(1, "NORMAL", true, vec![1]),
            row(2, "NORMAL", false, vec![2]),
        ];
        fill_ownership(&mut rows);
        let t = render_table(&rows);
        assert!(t.starts_with("Datacenter: dc1\n===============\n"), "{t}");
        assert!(t.contains("UN  127.0.0.1  2.00 KiB"), "{t}");
        assert!(t.contains("DN  127.0.0.2"), "{t}");
        let j = render_json(&rows).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["datacenters"]["dc1"][1]["state"], "DN");
    }
}
