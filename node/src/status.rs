//! `ringdb status [KEYSPACE]`: the cluster as one node sees it, printed like `nodetool status`.
//!
//! The tool is a CQL client: it reads `system_views.cluster_status` from the node it is pointed at
//! (every node that node knows through gossip, itself included, with liveness from its failure
//! detector) and `system_schema.keyspaces` (each keyspace's replication), and prints one table per
//! datacenter:
//!
//! ```text
//! Datacenter: dc1
//! ===============
//! Status=Up/Down
//! |/ State=Normal/Leaving/Joining/Moving
//! --  Address    Load      Tokens  Owns (effective)  Host ID                               Rack
//! UN  127.0.0.1  1.21 MiB  16      100.0%            5c0f5c3e-8a1e-4a35-9d6b-2f6a8f1d2e3c  rack1
//! ```
//!
//! Ownership is counted over the nodes whose tokens are on the ring (`NORMAL`, `LEAVING`, or
//! stopped with their tokens: `SHUTDOWN`), the members the coordinator places replicas on; the
//! others show `?`. It comes in two kinds, as in nodetool:
//!
//! * **Effective** ("Owns (effective)"): the share of the token ring a node holds a replica of
//!   under a keyspace's replication. The ring is built with `ringdb_ring`'s [`TokenRing`] and the
//!   replicas of every vnode range come from its [`ReplicaMap`], the same placement code the
//!   coordinator runs, so the figures are where the data actually goes. Each datacenter's nodes sum
//!   to that datacenter's replication factor × 100% (capped by its node count): RF 3 on 3 nodes
//!   shows 100.0% for each.
//! * **Raw** ("Owns"): the share of the ring between each of a node's tokens and the token before
//!   it; all nodes sum to 100%.
//!
//! Which one is printed follows `nodetool status [keyspace]`:
//!
//! * with a keyspace: effective ownership for it; an unknown keyspace is an error. A keyspace
//!   with `LocalStrategy` (`system`, `system_schema`, ...) gets raw ownership and the note
//!   "Ownership values for keyspaces with LocalStrategy are meaningless".
//! * without one: when every non-system keyspace has the same replication, effective ownership
//!   for it; when they differ, raw ownership and the note "Non-system keyspaces don't have the
//!   same replication settings, effective ownership information is meaningless". With no
//!   non-system keyspace at all, raw ownership (nodetool would fall back on `system_traces`;
//!   raw ownership is what a fresh cluster's ring actually looks like).
//!
//! The note is printed after the tables, and is the `note` field of `--json`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, Context};
use ringdb_cql::client::{Client, ClientOptions, QueryOptions, Rows, NO_VALUES};
use ringdb_cql::types::CqlValue;
use ringdb_ring::{Endpoint, HostId, ReplicaMap, Replication, Token, TokenRing, Topology};
use serde::Serialize;

use crate::schema::is_system_keyspace;

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
    /// Share of the token ring, 0..=1, when its tokens are on the ring: owned as primary owner
    /// (raw) or held a replica of (effective), as the report's [`Ownership`] says.
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
    /// Hints the node that answered holds for this one (writes it missed while down).
    pub pending_hints: i64,
}

/// What `ringdb status` prints: the nodes, and what their `owns` means.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// Every node the queried node knows, with its ownership filled in.
    pub rows: Vec<NodeStatusRow>,
    /// Whether `rows[..].owns` is effective ownership (and under which replication) or raw.
    pub ownership: Ownership,
}

/// Which ownership a report shows, and why.
#[derive(Debug, Clone, PartialEq)]
pub enum Ownership {
    /// Raw token ownership; `note` says why effective ownership was not shown, when it was
    /// wanted (nodetool's "Note: ...").
    Raw {
        /// nodetool's note, or `None` when raw ownership is simply what was asked for.
        note: Option<String>,
    },
    /// The share of the ring each node replicates under `replication`.
    Effective {
        /// The keyspace named on the command line; `None` when the replication is the one every
        /// non-system keyspace shares.
        keyspace: Option<String>,
        /// The replication the replicas were placed with.
        replication: Replication,
    },
}

/// nodetool's note when the non-system keyspaces replicate differently and none was named.
pub const NOTE_DIFFERENT_REPLICATION: &str =
    "Non-system keyspaces don't have the same replication \
     settings, effective ownership information is meaningless";
/// nodetool's note for a keyspace that is not replicated at all.
pub const NOTE_LOCAL_STRATEGY: &str =
    "Ownership values for keyspaces with LocalStrategy are meaningless";

/// One row of `system_schema.keyspaces`: a keyspace and its replication options as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceReplication {
    /// The keyspace name (case-sensitive, as stored).
    pub name: String,
    /// `system_schema.keyspaces.replication`: `class` and the factors, as text.
    pub options: BTreeMap<String, String>,
}

impl KeyspaceReplication {
    /// Whether the keyspace is kept on every node alone (`LocalStrategy`, the local system
    /// keyspaces): it has no replicas, so no effective ownership.
    fn is_local(&self) -> bool {
        // Short or fully qualified (`org.apache.cassandra.locator.LocalStrategy`).
        self.options
            .get("class")
            .is_some_and(|class| class.rsplit('.').next() == Some("LocalStrategy"))
    }

    /// The keyspace's replication, parsed the way placement parses it.
    fn replication(&self, known_dcs: &[&str]) -> anyhow::Result<Replication> {
        Replication::from_options(&self.options, known_dcs).map_err(|e| {
            anyhow!(
                "keyspace '{}' has replication {:?} that ringdb cannot place: {e}",
                self.name,
                self.options
            )
        })
    }
}

/// Reads the cluster status from the node at `target` (`HOST[:PORT]`, port 9042 by default), with
/// effective ownership for `keyspace` when one is named (see the module documentation for what is
/// shown without one). An unknown keyspace is an error. `credentials` log in to a cluster with
/// authentication.
pub async fn fetch(
    target: &str,
    keyspace: Option<&str>,
    timeout: Duration,
    credentials: Option<ringdb_cql::client::Credentials>,
) -> anyhow::Result<StatusReport> {
    let addr = cql_target(target);
    let options = ClientOptions {
        connect_timeout: timeout,
        credentials,
        ..ClientOptions::default()
    };
    let client = Client::connect(addr.as_str(), options)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let status = select(&client, &addr, "*", "system_views.cluster_status", timeout).await?;
    let rows = parse_cluster_status(&status);
    let keyspaces = select(
        &client,
        &addr,
        "keyspace_name, replication",
        "system_schema.keyspaces",
        timeout,
    )
    .await;
    match keyspaces {
        Ok(k) => report(rows, &parse_keyspaces(&k), keyspace),
        // Without a keyspace named, raw ownership is still worth showing.
        Err(e) if keyspace.is_none() => Ok(raw_report(
            rows,
            Some(format!(
                "{e:#}; effective ownership is unknown, showing raw ownership"
            )),
        )),
        Err(e) => Err(e),
    }
}

/// `SELECT columns FROM table` on `client` (every page), bounded by `timeout`.
async fn select(
    client: &Client,
    addr: &str,
    columns: &str,
    table: &str,
    timeout: Duration,
) -> anyhow::Result<Rows> {
    let cql = format!("SELECT {columns} FROM {table}");
    tokio::time::timeout(
        timeout,
        client.query_all(&cql, NO_VALUES, &QueryOptions::default()),
    )
    .await
    .map_err(|_| anyhow!("{addr} did not answer within {timeout:?}"))?
    .with_context(|| format!("reading {table} from {addr}"))?
    .into_rows()
    .ok_or_else(|| anyhow!("{addr} returned no rows for {table}"))
}

/// `system_schema.keyspaces` rows (rows without a name are skipped).
pub fn parse_keyspaces(rows: &Rows) -> Vec<KeyspaceReplication> {
    rows.rows
        .iter()
        .filter_map(|row| {
            let name = text(cell(rows, row, "keyspace_name"))?;
            let options = match cell(rows, row, "replication") {
                Some(CqlValue::Map(entries)) => entries
                    .iter()
                    .filter_map(|(k, v)| Some((text(Some(k))?, text(Some(v))?)))
                    .collect(),
                _ => BTreeMap::new(),
            };
            Some(KeyspaceReplication { name, options })
        })
        .collect()
}

/// The report for `rows`: effective ownership for the keyspace named, or for the replication all
/// non-system keyspaces share, else raw ownership (nodetool's choice, see the module
/// documentation). Nodes that left the ring (decommissioned) are not shown, as in nodetool.
/// Fails only for a keyspace named that is unknown or cannot be placed.
pub fn report(
    mut rows: Vec<NodeStatusRow>,
    keyspaces: &[KeyspaceReplication],
    requested: Option<&str>,
) -> anyhow::Result<StatusReport> {
    rows.retain(|r| r.gossip_status != "LEFT");
    let ring = StatusRing::of(&rows);
    let known_dcs: Vec<&str> = ring.ring.datacenters().collect();
    let ownership = match requested {
        Some(name) => {
            let keyspace = keyspaces
                .iter()
                .find(|k| k.name == name)
                .ok_or_else(|| unknown_keyspace(name, keyspaces))?;
            if keyspace.is_local() {
                Ownership::Raw {
                    note: Some(NOTE_LOCAL_STRATEGY.to_string()),
                }
            } else {
                Ownership::Effective {
                    keyspace: Some(keyspace.name.clone()),
                    replication: keyspace.replication(&known_dcs)?,
                }
            }
        }
        None => shared_replication(keyspaces, &known_dcs),
    };
    match &ownership {
        Ownership::Raw { .. } => ring.fill_raw(&mut rows),
        Ownership::Effective { replication, .. } => ring.fill_effective(&mut rows, replication),
    }
    Ok(StatusReport { rows, ownership })
}

/// The report with raw ownership.
fn raw_report(mut rows: Vec<NodeStatusRow>, note: Option<String>) -> StatusReport {
    StatusRing::of(&rows).fill_raw(&mut rows);
    StatusReport {
        rows,
        ownership: Ownership::Raw { note },
    }
}

/// Without a keyspace named: the replication every non-system keyspace shares, if they do.
fn shared_replication(keyspaces: &[KeyspaceReplication], known_dcs: &[&str]) -> Ownership {
    let mut shared: Option<Replication> = None;
    for keyspace in keyspaces
        .iter()
        .filter(|k| !is_system_keyspace(&k.name) && !k.is_local())
    {
        let replication = match keyspace.replication(known_dcs) {
            Ok(r) => r,
            Err(e) => {
                return Ownership::Raw {
                    note: Some(format!("{e:#}; showing raw ownership")),
                }
            }
        };
        match &shared {
            Some(s) if *s != replication => {
                return Ownership::Raw {
                    note: Some(NOTE_DIFFERENT_REPLICATION.to_string()),
                }
            }
            Some(_) => {}
            None => shared = Some(replication),
        }
    }
    match shared {
        Some(replication) => Ownership::Effective {
            keyspace: None,
            replication,
        },
        None => Ownership::Raw { note: None },
    }
}

/// The error for a keyspace that does not exist, naming the ones that do.
fn unknown_keyspace(name: &str, keyspaces: &[KeyspaceReplication]) -> anyhow::Error {
    if let Some(k) = keyspaces.iter().find(|k| k.name.eq_ignore_ascii_case(name)) {
        return anyhow!(
            "keyspace '{name}' does not exist (keyspace names are case-sensitive here: did you \
             mean '{}'?)",
            k.name
        );
    }
    let mut names: Vec<&str> = keyspaces
        .iter()
        .map(|k| k.name.as_str())
        .filter(|n| !is_system_keyspace(n))
        .collect();
    names.sort_unstable();
    if names.is_empty() {
        anyhow!("keyspace '{name}' does not exist (there is no non-system keyspace)")
    } else {
        anyhow!(
            "keyspace '{name}' does not exist (non-system keyspaces: {})",
            names.join(", ")
        )
    }
}

/// `system_views.cluster_status` rows as read by a client (rows without a readable `peer` are
/// skipped). Ownership is left for [`report`] (or [`fill_ownership`]).
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
                pending_hints: bigint(get("pending_hints")).unwrap_or(0),
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

/// The token ring of the nodes that own tokens, built with the same `ringdb_ring` types the
/// coordinator places replicas with. Ring hosts are numbered by row: host `i` is `rows[i]`.
struct StatusRing {
    ring: TokenRing,
}

impl StatusRing {
    /// The ring of the rows whose tokens are on it. A node claiming a token another node already
    /// holds is left out, as the coordinator leaves it out (it then shows `?`).
    fn of(rows: &[NodeStatusRow]) -> StatusRing {
        let mut topology = Topology::new();
        for (i, row) in rows.iter().enumerate() {
            if !owns_tokens(&row.gossip_status) || row.tokens.is_empty() {
                continue;
            }
            // The coordinator's name for a datacenter gossip has not told (`?` in the table).
            let unknown = |s: &str| if s == "?" { "unknown" } else { s }.to_string();
            let endpoint = Endpoint {
                host_id: HostId::from_u128(i as u128),
                addr: std::net::SocketAddr::new(row.address, row.storage_port),
                dc: unknown(&row.dc),
                rack: unknown(&row.rack),
                tokens: row.tokens.iter().map(|&t| Token(t)).collect(),
            };
            // On a conflict the topology is left unchanged: the node is simply not on the ring.
            let _ = topology.insert(endpoint);
        }
        StatusRing {
            ring: TokenRing::new(topology),
        }
    }

    /// The row index of each node on the ring.
    fn members(&self) -> impl Iterator<Item = (usize, HostId)> + '_ {
        self.ring.hosts().map(|h| (h.as_u128() as usize, h))
    }

    /// Raw ownership: each ring member's share of the ring as primary owner; `None` for others.
    fn fill_raw(&self, rows: &mut [NodeStatusRow]) {
        for row in rows.iter_mut() {
            row.owns = None;
        }
        for (i, host) in self.members() {
            rows[i].owns = Some(self.ring.ownership(&host));
        }
    }

    /// Effective ownership: the share of the ring each ring member holds a replica of under
    /// `replication` (0 for a member of a datacenter it does not replicate to); `None` for others.
    fn fill_effective(&self, rows: &mut [NodeStatusRow], replication: &Replication) {
        let shares = ReplicaMap::new(&self.ring, replication).replicated_ownership_by_host();
        for row in rows.iter_mut() {
            row.owns = None;
        }
        for (i, host) in self.members() {
            rows[i].owns = Some(shares.get(&host).copied().unwrap_or(0.0));
        }
    }
}

/// Raw token ownership of each node that owns tokens (what `ringdb status` shows without
/// replication to apply).
pub fn fill_ownership(rows: &mut [NodeStatusRow]) {
    StatusRing::of(rows).fill_raw(rows);
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

/// The per-datacenter tables, then nodetool's note if there is one. The ownership column is
/// "Owns (effective)" or "Owns" (raw).
pub fn render_table(report: &StatusReport) -> String {
    let owns_header = match report.ownership {
        Ownership::Effective { .. } => "Owns (effective)",
        Ownership::Raw { .. } => "Owns",
    };
    let mut by_dc: BTreeMap<&str, Vec<&NodeStatusRow>> = BTreeMap::new();
    for r in &report.rows {
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
        let header = [
            "--",
            "Address",
            "Load",
            "Tokens",
            owns_header,
            "Host ID",
            "Rack",
        ];
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
    if let Ownership::Raw { note: Some(note) } = &report.ownership {
        out.push_str(&format!("Note: {note}\n"));
    }
    let mut hinted: Vec<&NodeStatusRow> =
        report.rows.iter().filter(|r| r.pending_hints > 0).collect();
    if !hinted.is_empty() {
        hinted.sort_by_key(|r| (r.address, r.storage_port));
        let held: Vec<String> = hinted
            .iter()
            .map(|r| format!("{} {}", r.address, r.pending_hints))
            .collect();
        out.push_str(&format!(
            "Hints this node holds for replay: {}\n",
            held.join(", ")
        ));
    }
    out
}

/// The report as JSON: `{"ownership": "effective", "keyspace": "ks", "replication": {...},
/// "note": null, "datacenters": {"dc1": [ {...}, ... ]}}`. `ownership` is `effective` or `raw` and
/// says what each node's `owns` is; `keyspace` is the keyspace named (null when none was, even
/// with effective ownership from the replication all non-system keyspaces share);
/// `replication` is the replication effective ownership was computed with (null for raw); `note`
/// is nodetool's note (null when there is none).
pub fn render_json(report: &StatusReport) -> anyhow::Result<String> {
    let mut by_dc: BTreeMap<&str, Vec<&NodeStatusRow>> = BTreeMap::new();
    for r in &report.rows {
        by_dc.entry(r.dc.as_str()).or_default().push(r);
    }
    for nodes in by_dc.values_mut() {
        nodes.sort_by_key(|r| (r.address, r.storage_port));
    }
    #[derive(Serialize)]
    struct Out<'a> {
        ownership: &'static str,
        keyspace: Option<&'a str>,
        replication: Option<BTreeMap<String, String>>,
        note: Option<&'a str>,
        datacenters: BTreeMap<&'a str, Vec<&'a NodeStatusRow>>,
    }
    let out = match &report.ownership {
        Ownership::Effective {
            keyspace,
            replication,
        } => Out {
            ownership: "effective",
            keyspace: keyspace.as_deref(),
            replication: Some(replication.to_options()),
            note: None,
            datacenters: by_dc,
        },
        Ownership::Raw { note } => Out {
            ownership: "raw",
            keyspace: None,
            replication: None,
            note: note.as_deref(),
            datacenters: by_dc,
        },
    };
    Ok(serde_json::to_string_pretty(&out)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::replication::LOCAL_STRATEGY;

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
            pending_hints: 0,
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
        let rows = vec![
            row(1, "NORMAL", true, vec![1]),
            row(2, "NORMAL", false, vec![2]),
        ];
        let report = report(rows, &[], None).unwrap();
        let t = render_table(&report);
        assert!(t.starts_with("Datacenter: dc1\n===============\n"), "{t}");
        assert!(t.contains("UN  127.0.0.1  2.00 KiB"), "{t}");
        assert!(t.contains("DN  127.0.0.2"), "{t}");
        assert!(t.contains("  Owns  "), "{t}");
        assert!(!t.contains("Note:"), "{t}");
        let j = render_json(&report).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["datacenters"]["dc1"][1]["state"], "DN");
        assert_eq!(v["ownership"], "raw");
        assert!(v["note"].is_null() && v["replication"].is_null(), "{v}");
    }

    #[test]
    fn nodes_that_left_the_ring_are_not_shown() {
        let rows = vec![
            row(1, "NORMAL", true, vec![1]),
            row(2, "LEFT", false, vec![2]),
        ];
        let shown = report(rows, &[], None).unwrap();
        assert_eq!(shown.rows.len(), 1);
        assert_eq!(shown.rows[0].owns, Some(1.0));
    }

    #[test]
    fn hints_held_are_listed_after_the_tables() {
        let mut down = row(2, "NORMAL", false, vec![2]);
        down.pending_hints = 42;
        let held = report(vec![row(1, "NORMAL", true, vec![1]), down], &[], None).unwrap();
        let t = render_table(&held);
        assert!(
            t.ends_with("Hints this node holds for replay: 127.0.0.2 42\n"),
            "{t}"
        );
        let j = render_json(&held).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["datacenters"]["dc1"][1]["pending_hints"], 42);
        let quiet = report(vec![row(1, "NORMAL", true, vec![1])], &[], None).unwrap();
        assert!(!render_table(&quiet).contains("Hints"));
    }

    fn keyspace(name: &str, options: &[(&str, &str)]) -> KeyspaceReplication {
        KeyspaceReplication {
            name: name.into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn simple(name: &str, rf: usize) -> KeyspaceReplication {
        keyspace(
            name,
            &[
                ("class", "org.apache.cassandra.locator.SimpleStrategy"),
                ("replication_factor", &rf.to_string()),
            ],
        )
    }

    /// The system keyspaces as `system_schema.keyspaces` shows them.
    fn system_keyspaces() -> Vec<KeyspaceReplication> {
        let local = [("class", LOCAL_STRATEGY)];
        vec![
            keyspace("system", &local),
            keyspace("system_schema", &local),
            keyspace("system_views", &local),
            simple("system_auth", 1),
            simple("system_distributed", 3),
            simple("system_traces", 2),
        ]
    }

    /// `n` nodes of `dc` with `vnodes` tokens each from a small deterministic generator.
    fn nodes(first_ip: u8, n: u8, dc: &str, vnodes: usize, seed: &mut u64) -> Vec<NodeStatusRow> {
        (first_ip..first_ip + n)
            .map(|ip| {
                let tokens = (0..vnodes)
                    .map(|_| {
                        // xorshift64*: reproducible without a dependency.
                        *seed ^= *seed << 13;
                        *seed ^= *seed >> 7;
                        *seed ^= *seed << 17;
                        seed.wrapping_mul(0x2545_f491_4f6c_dd1d) as i64
                    })
                    .collect();
                NodeStatusRow {
                    dc: dc.into(),
                    rack: format!("rack{}", ip % 2),
                    ..row(ip, "NORMAL", true, tokens)
                }
            })
            .collect()
    }

    fn owns_by_ip(report: &StatusReport) -> BTreeMap<u8, Option<f64>> {
        report
            .rows
            .iter()
            .map(|r| match r.address {
                IpAddr::V4(v4) => (v4.octets()[3], r.owns),
                IpAddr::V6(_) => unreachable!(),
            })
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn rf_equal_to_node_count_gives_every_node_the_whole_ring() {
        let mut seed = 7;
        let rows = nodes(1, 3, "dc1", 16, &mut seed);
        let mut keyspaces = system_keyspaces();
        keyspaces.push(simple("ks", 3));
        let report = report(rows, &keyspaces, Some("ks")).unwrap();
        for (ip, owns) in owns_by_ip(&report) {
            assert!(close(owns.unwrap(), 1.0), "node {ip}: {owns:?}");
        }
        let t = render_table(&report);
        assert!(t.contains("  Owns (effective)  "), "{t}");
        assert_eq!(t.matches("100.0%").count(), 3, "{t}");
        let v: serde_json::Value = serde_json::from_str(&render_json(&report).unwrap()).unwrap();
        assert_eq!(v["ownership"], "effective");
        assert_eq!(v["keyspace"], "ks");
        assert_eq!(v["replication"]["replication_factor"], "3");
    }

    /// Naive reference for SimpleStrategy: every range `(prev, token]` goes to the first `rf`
    /// distinct owners met walking the sorted tokens from `token` on.
    fn naive_simple(rows: &[NodeStatusRow], rf: usize) -> Vec<f64> {
        let mut ring: Vec<(i64, usize)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| owns_tokens(&r.gossip_status))
            .flat_map(|(i, r)| r.tokens.iter().map(move |&t| (t, i)))
            .collect();
        ring.sort_unstable();
        let mut share = vec![0f64; rows.len()];
        for (k, &(token, _)) in ring.iter().enumerate() {
            let prev = ring[(k + ring.len() - 1) % ring.len()].0;
            let width = (token as i128 - prev as i128).rem_euclid(1 << 64) as f64;
            let mut replicas = Vec::new();
            for step in 0..ring.len() {
                let owner = ring[(k + step) % ring.len()].1;
                if replicas.len() < rf && !replicas.contains(&owner) {
                    replicas.push(owner);
                }
            }
            for owner in replicas {
                share[owner] += width / 18_446_744_073_709_551_616.0;
            }
        }
        share
    }

    #[test]
    fn simple_strategy_matches_a_naive_walk_and_sums_to_rf() {
        for (seed, n, vnodes, rf) in [(1u64, 5u8, 8usize, 2usize), (2, 4, 1, 3), (3, 7, 16, 3)] {
            let mut s = seed;
            let mut rows = nodes(1, n, "dc1", vnodes, &mut s);
            // A joining node's tokens are not on the ring; nor are they counted.
            rows.push(row(100, "JOINING", true, vec![12345]));
            let expected = naive_simple(&rows, rf);
            let r = report(rows, &[simple("ks", rf)], Some("ks")).unwrap();
            let mut total = 0.0;
            for (row, want) in r.rows.iter().zip(&expected) {
                if row.gossip_status == "JOINING" {
                    assert_eq!(row.owns, None);
                    continue;
                }
                let got = row.owns.unwrap();
                assert!((got - want).abs() < 1e-9, "seed {seed}: {got} != {want}");
                total += got;
            }
            assert!(close(total, rf as f64), "seed {seed}: total {total}");
        }
    }

    #[test]
    fn network_topology_sums_to_each_dcs_factor() {
        let mut seed = 42;
        let mut rows = nodes(1, 3, "dc1", 8, &mut seed);
        rows.extend(nodes(11, 2, "dc2", 8, &mut seed));
        rows.extend(nodes(21, 2, "dc3", 8, &mut seed));
        let nts = keyspace(
            "ks",
            &[
                (
                    "class",
                    "org.apache.cassandra.locator.NetworkTopologyStrategy",
                ),
                ("dc1", "3"),
                ("dc2", "1"),
            ],
        );
        let report = report(rows, &[nts], Some("ks")).unwrap();
        let sum = |dc: &str| -> f64 {
            report
                .rows
                .iter()
                .filter(|r| r.dc == dc)
                .map(|r| r.owns.unwrap())
                .sum()
        };
        assert!(close(sum("dc1"), 3.0), "dc1 {}", sum("dc1"));
        assert!(close(sum("dc2"), 1.0), "dc2 {}", sum("dc2"));
        // No factor for dc3: its nodes hold nothing of this keyspace.
        assert!(close(sum("dc3"), 0.0), "dc3 {}", sum("dc3"));
        for r in report.rows.iter().filter(|r| r.dc == "dc1") {
            assert!(close(r.owns.unwrap(), 1.0), "{r:?}");
        }
    }

    #[test]
    fn without_a_keyspace_ownership_follows_nodetool() {
        let mut seed = 9;
        let rows = nodes(1, 3, "dc1", 4, &mut seed);
        let system = system_keyspaces();

        // No non-system keyspace: raw ownership, no note (system keyspaces are ignored).
        let r = report(rows.clone(), &system, None).unwrap();
        assert_eq!(r.ownership, Ownership::Raw { note: None });
        let total: f64 = r.rows.iter().map(|r| r.owns.unwrap()).sum();
        assert!(close(total, 1.0), "{total}");

        // All non-system keyspaces replicate alike: effective ownership for that.
        let mut same = system.clone();
        same.extend([simple("a", 2), simple("b", 2)]);
        let r = report(rows.clone(), &same, None).unwrap();
        assert!(
            matches!(&r.ownership, Ownership::Effective { keyspace: None, .. }),
            "{:?}",
            r.ownership
        );
        let total: f64 = r.rows.iter().map(|r| r.owns.unwrap()).sum();
        assert!(close(total, 2.0), "{total}");
        assert!(render_table(&r).contains("Owns (effective)"));

        // They differ: raw ownership and nodetool's note, after the tables.
        let mut different = same.clone();
        different.push(simple("c", 3));
        let r = report(rows.clone(), &different, None).unwrap();
        assert_eq!(
            r.ownership,
            Ownership::Raw {
                note: Some(NOTE_DIFFERENT_REPLICATION.into())
            }
        );
        let total: f64 = r.rows.iter().map(|r| r.owns.unwrap()).sum();
        assert!(close(total, 1.0), "{total}");
        let t = render_table(&r);
        assert!(
            t.ends_with(&format!("\nNote: {NOTE_DIFFERENT_REPLICATION}\n")),
            "{t}"
        );
        assert!(!t.contains("effective)"), "{t}");
        let v: serde_json::Value = serde_json::from_str(&render_json(&r).unwrap()).unwrap();
        assert_eq!(v["note"], NOTE_DIFFERENT_REPLICATION);

        // Naming one of them still works.
        let r = report(rows, &different, Some("c")).unwrap();
        assert!(r.rows.iter().all(|r| close(r.owns.unwrap(), 1.0)));
    }

    #[test]
    fn unknown_and_local_keyspaces() {
        let mut seed = 3;
        let rows = nodes(1, 2, "dc1", 4, &mut seed);
        let mut keyspaces = system_keyspaces();
        keyspaces.push(simple("Orders", 1));
        keyspaces.push(simple("users", 1));

        let e = report(rows.clone(), &keyspaces, Some("nope")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "keyspace 'nope' does not exist (non-system keyspaces: Orders, users)"
        );
        let e = report(rows.clone(), &keyspaces, Some("orders")).unwrap_err();
        assert!(e.to_string().contains("did you mean 'Orders'?"), "{e}");
        let e = report(rows.clone(), &system_keyspaces(), Some("ks")).unwrap_err();
        assert!(e.to_string().contains("no non-system keyspace"), "{e}");

        // LocalStrategy: nothing is replicated, so raw ownership with nodetool's note.
        let r = report(rows.clone(), &keyspaces, Some("system")).unwrap();
        assert_eq!(
            r.ownership,
            Ownership::Raw {
                note: Some(NOTE_LOCAL_STRATEGY.into())
            }
        );
        // A replicated system keyspace has effective ownership like any other.
        let r = report(rows, &keyspaces, Some("system_auth")).unwrap();
        let total: f64 = r.rows.iter().map(|r| r.owns.unwrap()).sum();
        assert!(close(total, 1.0), "{total}");
    }

    #[test]
    fn keyspaces_parse_from_system_schema_rows() {
        use ringdb_cql::message::ColumnSpec;
        use ringdb_cql::types::CqlType;
        let spec = |name: &str, ty: CqlType| ColumnSpec {
            keyspace: "system_schema".into(),
            table: "keyspaces".into(),
            name: name.into(),
            ty,
        };
        let text_type = || Box::new(CqlType::Text);
        let t = |s: &str| CqlValue::Text(s.into());
        let rows = Rows {
            columns: vec![
                spec("keyspace_name", CqlType::Text),
                spec("replication", CqlType::Map(text_type(), text_type())),
            ],
            rows: vec![
                vec![
                    Some(t("ks")),
                    Some(CqlValue::Map(vec![
                        (t("class"), t("org.apache.cassandra.locator.SimpleStrategy")),
                        (t("replication_factor"), t("3")),
                    ])),
                ],
                vec![None, None],
            ],
            paging_state: None,
        };
        assert_eq!(parse_keyspaces(&rows), vec![simple("ks", 3)]);
    }
}
