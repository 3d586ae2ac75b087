//! Reads and writes of the `system_auth` tables, as CQL run by the node itself through the
//! executor, so they take the normal replicated path (coordinator, hints, read repair).
//!
//! `system_auth` is an ordinary replicated keyspace (SimpleStrategy, RF 3: every node of a
//! cluster of up to three). Writes and reads ask for QUORUM and fall back to ONE when too few
//! replicas are alive for a quorum — a single node, or a cluster with nodes down — so that a
//! surviving node still lets its users in.

use ringdb_cql::ast::Permission;
use ringdb_cql::types::CqlValue;

use super::permissions::Grants;
use super::RoleRecord;
use crate::executor::{ExecError, Executor, QueryResult};

const QUORUM: u16 = 0x0004;
const ONE: u16 = 0x0001;

/// Runs a statement at QUORUM, at ONE if a quorum is unavailable.
async fn run(exec: &Executor, cql: &str, values: &[CqlValue]) -> Result<QueryResult, ExecError> {
    match exec.run_internal(cql, values, QUORUM).await {
        Err(ExecError::Unavailable { .. }) => exec.run_internal(cql, values, ONE).await,
        other => other,
    }
}

/// The rows of a result, each cell decoded with its column's type.
fn decode(result: QueryResult) -> Result<Vec<Vec<Option<CqlValue>>>, ExecError> {
    let QueryResult::Rows { columns, rows, .. } = result else {
        return Ok(Vec::new());
    };
    rows.into_iter()
        .map(|row| {
            row.into_iter()
                .zip(&columns)
                .map(|(cell, col)| match cell {
                    None => Ok(None),
                    Some(bytes) => CqlValue::deserialize(&col.ty, &bytes)
                        .map(Some)
                        .map_err(|e| ExecError::Server(format!("system_auth: {e}"))),
                })
                .collect()
        })
        .collect()
}

fn text(v: &Option<CqlValue>) -> Option<String> {
    match v {
        Some(CqlValue::Text(s)) | Some(CqlValue::Ascii(s)) => Some(s.clone()),
        _ => None,
    }
}

fn boolean(v: &Option<CqlValue>) -> bool {
    matches!(v, Some(CqlValue::Boolean(true)))
}

fn record(row: &[Option<CqlValue>]) -> Option<RoleRecord> {
    Some(RoleRecord {
        name: text(row.first()?)?,
        can_login: boolean(row.get(1)?),
        is_superuser: boolean(row.get(2)?),
        salted_hash: row.get(3).and_then(text),
    })
}

/// One role, or `None` if it does not exist.
pub async fn read_role(exec: &Executor, role: &str) -> Result<Option<RoleRecord>, ExecError> {
    let rows = decode(
        run(
            exec,
            "SELECT role, can_login, is_superuser, salted_hash FROM system_auth.roles WHERE role = ?",
            &[CqlValue::Text(role.to_string())],
        )
        .await?,
    )?;
    Ok(rows.first().and_then(|r| record(r)))
}

/// Every role, sorted by name.
pub async fn list_roles(exec: &Executor) -> Result<Vec<RoleRecord>, ExecError> {
    let rows = decode(
        run(
            exec,
            "SELECT role, can_login, is_superuser, salted_hash FROM system_auth.roles",
            &[],
        )
        .await?,
    )?;
    let mut roles: Vec<RoleRecord> = rows.iter().filter_map(|r| record(r)).collect();
    roles.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(roles)
}

/// Writes a role whole. `timestamp` is for the superuser made from the configuration (0, so that
/// anything a user does later wins); `None` takes the clock's.
pub async fn write_role(
    exec: &Executor,
    role: &RoleRecord,
    timestamp: Option<i64>,
) -> Result<(), ExecError> {
    let mut columns = vec!["role", "can_login", "is_superuser"];
    let mut values = vec![
        CqlValue::Text(role.name.clone()),
        CqlValue::Boolean(role.can_login),
        CqlValue::Boolean(role.is_superuser),
    ];
    if let Some(h) = &role.salted_hash {
        columns.push("salted_hash");
        values.push(CqlValue::Text(h.clone()));
    }
    let markers = vec!["?"; columns.len()].join(", ");
    let mut cql = format!(
        "INSERT INTO system_auth.roles ({}) VALUES ({markers})",
        columns.join(", ")
    );
    if let Some(ts) = timestamp {
        cql.push_str(" USING TIMESTAMP ?");
        values.push(CqlValue::BigInt(ts));
    }
    run(exec, &cql, &values).await.map(|_| ())
}

/// Sets some columns of an existing role.
pub async fn update_role(
    exec: &Executor,
    role: &str,
    can_login: Option<bool>,
    is_superuser: Option<bool>,
    salted_hash: Option<String>,
) -> Result<(), ExecError> {
    let mut sets = Vec::new();
    let mut values = Vec::new();
    if let Some(b) = can_login {
        sets.push("can_login = ?");
        values.push(CqlValue::Boolean(b));
    }
    if let Some(b) = is_superuser {
        sets.push("is_superuser = ?");
        values.push(CqlValue::Boolean(b));
    }
    if let Some(h) = salted_hash {
        sets.push("salted_hash = ?");
        values.push(CqlValue::Text(h));
    }
    if sets.is_empty() {
        return Ok(());
    }
    values.push(CqlValue::Text(role.to_string()));
    let cql = format!(
        "UPDATE system_auth.roles SET {} WHERE role = ?",
        sets.join(", ")
    );
    run(exec, &cql, &values).await.map(|_| ())
}

/// Deletes a role and every permission granted to it.
pub async fn delete_role(exec: &Executor, role: &str) -> Result<(), ExecError> {
    let key = [CqlValue::Text(role.to_string())];
    run(
        exec,
        "DELETE FROM system_auth.role_permissions WHERE role = ?",
        &key,
    )
    .await?;
    run(exec, "DELETE FROM system_auth.roles WHERE role = ?", &key).await?;
    Ok(())
}

fn permission_set(row: Option<&Option<CqlValue>>) -> Vec<Permission> {
    match row {
        Some(Some(CqlValue::Set(items))) => items
            .iter()
            .filter_map(|v| match v {
                CqlValue::Text(s) | CqlValue::Ascii(s) => Permission::from_name(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The permissions granted to `role`.
pub async fn read_grants(exec: &Executor, role: &str) -> Result<Grants, ExecError> {
    let rows = decode(
        run(
            exec,
            "SELECT resource, permissions FROM system_auth.role_permissions WHERE role = ?",
            &[CqlValue::Text(role.to_string())],
        )
        .await?,
    )?;
    let mut grants = Grants::new();
    for row in &rows {
        let Some(resource) = row.first().and_then(text) else {
            continue;
        };
        let perms = permission_set(row.get(1));
        if !perms.is_empty() {
            grants.entry(resource).or_default().extend(perms);
        }
    }
    Ok(grants)
}

/// Every grant: `(role, resource, permission)`.
pub async fn all_grants(exec: &Executor) -> Result<Vec<(String, String, Permission)>, ExecError> {
    let rows = decode(
        run(
            exec,
            "SELECT role, resource, permissions FROM system_auth.role_permissions",
            &[],
        )
        .await?,
    )?;
    let mut out = Vec::new();
    for row in &rows {
        let (Some(role), Some(resource)) = (row.first().and_then(text), row.get(1).and_then(text))
        else {
            continue;
        };
        for p in permission_set(row.get(2)) {
            out.push((role.clone(), resource.clone(), p));
        }
    }
    Ok(out)
}

/// Adds (`grant`) or removes permissions of `role` on `resource`.
pub async fn change_grants(
    exec: &Executor,
    role: &str,
    resource: &str,
    permissions: &[Permission],
    grant: bool,
) -> Result<(), ExecError> {
    let set = CqlValue::Set(
        permissions
            .iter()
            .map(|p| CqlValue::Text(p.name().to_string()))
            .collect(),
    );
    let cql = if grant {
        "UPDATE system_auth.role_permissions SET permissions = permissions + ? WHERE role = ? AND resource = ?"
    } else {
        "UPDATE system_auth.role_permissions SET permissions = permissions - ? WHERE role = ? AND resource = ?"
    };
    run(
        exec,
        cql,
        &[
            set,
            CqlValue::Text(role.to_string()),
            CqlValue::Text(resource.to_string()),
        ],
    )
    .await
    .map(|_| ())
}
