//! Resources, what each statement needs, and whether a role's grants cover it — pure functions,
//! so the rules are tested as a table.
//!
//! Data resources are named as Cassandra names them in `system_auth.role_permissions`: `data`
//! (all keyspaces), `data/<ks>` and `data/<ks>/<table>`. A permission granted on a resource
//! covers everything it contains: SELECT on `data/ks` allows reading every table of `ks`.

use std::collections::{BTreeMap, BTreeSet};

use ringdb_cql::ast::{Permission, QualifiedName, Resource, Statement};

use crate::schema::is_system_keyspace;

/// The resource covering every keyspace.
pub const ALL_KEYSPACES: &str = "data";

/// A role's grants: resource name → permissions granted on it.
pub type Grants = BTreeMap<String, BTreeSet<Permission>>;

/// What a statement needs from the role running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `permission` on `resource` (or on a resource containing it).
    Permission {
        permission: Permission,
        resource: String,
    },
    /// Role management: superusers only.
    Superuser,
}

/// Why a statement's resource could not be named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoKeyspace;

/// `data/<ks>`.
pub fn keyspace_resource(keyspace: &str) -> String {
    format!("{ALL_KEYSPACES}/{keyspace}")
}

/// `data/<ks>/<table>`.
pub fn table_resource(keyspace: &str, table: &str) -> String {
    format!("{ALL_KEYSPACES}/{keyspace}/{table}")
}

/// The resource name of a GRANT / REVOKE / LIST target; a table without a keyspace takes the
/// session's.
pub fn resource_name(resource: &Resource, session: Option<&str>) -> Result<String, NoKeyspace> {
    Ok(match resource {
        Resource::AllKeyspaces => ALL_KEYSPACES.to_string(),
        Resource::Keyspace(k) => keyspace_resource(k),
        Resource::Table(t) => {
            let ks = t.keyspace.as_deref().or(session).ok_or(NoKeyspace)?;
            table_resource(ks, &t.name)
        }
    })
}

/// How Cassandra shows a resource in `LIST PERMISSIONS`: `<all keyspaces>`, `<keyspace ks>`,
/// `<table ks.t>`.
pub fn display_resource(resource: &str) -> String {
    let mut parts = resource.split('/');
    let _root = parts.next();
    match (parts.next(), parts.next()) {
        (None, _) => "<all keyspaces>".to_string(),
        (Some(ks), None) => format!("<keyspace {ks}>"),
        (Some(ks), Some(t)) => format!("<table {ks}.{t}>"),
    }
}

/// The resource and the resources containing it, innermost first.
pub fn with_parents(resource: &str) -> Vec<&str> {
    let mut out = vec![resource];
    let mut rest = resource;
    while let Some(i) = rest.rfind('/') {
        rest = &rest[..i];
        out.push(rest);
    }
    out
}

/// Whether `grants` give `permission` on `resource`, directly or through a containing resource.
pub fn is_granted(grants: &Grants, permission: Permission, resource: &str) -> bool {
    with_parents(resource)
        .into_iter()
        .any(|r| grants.get(r).is_some_and(|p| p.contains(&permission)))
}

/// Whether a role with `superuser` and `grants` meets `requirement`.
pub fn meets(superuser: bool, grants: &Grants, requirement: &Requirement) -> bool {
    if superuser {
        return true;
    }
    match requirement {
        Requirement::Superuser => false,
        Requirement::Permission {
            permission,
            resource,
        } => is_granted(grants, *permission, resource),
    }
}

/// Keyspaces anyone may read: drivers read `system`, `system_schema` and (Cassandra 4's)
/// `system_virtual_schema` on connect — the last does not exist here, and a driver must get
/// the "does not exist" answer it expects, not Unauthorized. Not `system_auth`, which holds
/// password hashes.
pub fn is_public_keyspace(keyspace: &str) -> bool {
    (is_system_keyspace(keyspace) || keyspace == "system_virtual_schema")
        && keyspace != crate::auth::AUTH_KEYSPACE
}

/// What running `stmt` needs, given the session keyspace. Role statements whose needs depend on
/// who runs them (changing one's own password, listing one's own roles and permissions, GRANT
/// by a holder of AUTHORIZE) are decided where they run; they need nothing here.
pub fn requirements(
    stmt: &Statement,
    session: Option<&str>,
) -> Result<Vec<Requirement>, NoKeyspace> {
    let table = |name: &QualifiedName| -> Result<(String, String), NoKeyspace> {
        let ks = name.keyspace.as_deref().or(session).ok_or(NoKeyspace)?;
        Ok((ks.to_string(), name.name.clone()))
    };
    let on_table = |permission, name: &QualifiedName| -> Result<Requirement, NoKeyspace> {
        let (ks, t) = table(name)?;
        Ok(Requirement::Permission {
            permission,
            resource: table_resource(&ks, &t),
        })
    };
    let on_keyspace = |permission, ks: &str| Requirement::Permission {
        permission,
        resource: keyspace_resource(ks),
    };
    Ok(match stmt {
        Statement::Select(s) => {
            let (ks, _) = table(&s.table)?;
            if is_public_keyspace(&ks) {
                Vec::new()
            } else {
                vec![on_table(Permission::Select, &s.table)?]
            }
        }
        Statement::Insert(i) => vec![on_table(Permission::Modify, &i.table)?],
        Statement::Update(u) => vec![on_table(Permission::Modify, &u.table)?],
        Statement::Delete(d) => vec![on_table(Permission::Modify, &d.table)?],
        Statement::Truncate(t) => vec![on_table(Permission::Modify, t)?],
        Statement::Batch(b) => {
            let mut all = Vec::new();
            for s in &b.statements {
                for r in requirements(s, session)? {
                    if !all.contains(&r) {
                        all.push(r);
                    }
                }
            }
            all
        }
        Statement::CreateKeyspace(_) => vec![Requirement::Permission {
            permission: Permission::Create,
            resource: ALL_KEYSPACES.to_string(),
        }],
        Statement::AlterKeyspace(k) => vec![on_keyspace(Permission::Alter, &k.name)],
        Statement::DropKeyspace { name, .. } => vec![on_keyspace(Permission::Drop, name)],
        Statement::CreateTable(c) => {
            let (ks, _) = table(&c.table)?;
            vec![on_keyspace(Permission::Create, &ks)]
        }
        Statement::AlterTable(a) => vec![on_table(Permission::Alter, &a.table)?],
        Statement::DropTable { table: t, .. } => vec![on_table(Permission::Drop, t)?],
        Statement::CreateRole(_) | Statement::DropRole { .. } => vec![Requirement::Superuser],
        Statement::Use(_)
        | Statement::Describe(_)
        | Statement::AlterRole { .. }
        | Statement::ListRoles { .. }
        | Statement::Grant(_)
        | Statement::Revoke(_)
        | Statement::ListPermissions(_) => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringdb_cql::parser::parse_statement;

    fn grants(list: &[(&str, &[Permission])]) -> Grants {
        list.iter()
            .map(|(r, p)| (r.to_string(), p.iter().copied().collect()))
            .collect()
    }

    /// Whether a non-superuser role with `g` may run `cql` in session keyspace `ks`.
    fn allowed(g: &Grants, cql: &str, ks: Option<&str>) -> bool {
        let stmt = parse_statement(cql).unwrap();
        requirements(&stmt, ks)
            .unwrap()
            .iter()
            .all(|r| meets(false, g, r))
    }

    #[test]
    fn parents_and_names() {
        assert_eq!(
            with_parents("data/ks/t"),
            vec!["data/ks/t", "data/ks", "data"]
        );
        assert_eq!(with_parents("data"), vec!["data"]);
        assert_eq!(display_resource("data"), "<all keyspaces>");
        assert_eq!(display_resource("data/ks"), "<keyspace ks>");
        assert_eq!(display_resource("data/ks/t"), "<table ks.t>");
        let t = Resource::Table(QualifiedName {
            keyspace: None,
            name: "t".into(),
        });
        assert_eq!(resource_name(&t, Some("ks")).unwrap(), "data/ks/t");
        assert_eq!(resource_name(&t, None), Err(NoKeyspace));
    }

    #[test]
    fn permission_resolution_table() {
        use Permission::*;
        let select_ks = grants(&[("data/ks", &[Select])]);
        let modify_t = grants(&[("data/ks/t", &[Modify])]);
        let all = grants(&[("data", &Permission::ALL)]);
        let none = Grants::new();
        let cases: &[(&Grants, &str, Option<&str>, bool)] = &[
            (&select_ks, "SELECT * FROM ks.t", None, true),
            (&select_ks, "SELECT * FROM t", Some("ks"), true),
            (&select_ks, "SELECT * FROM other.t", None, false),
            (&select_ks, "INSERT INTO ks.t (k) VALUES (1)", None, false),
            (&modify_t, "INSERT INTO ks.t (k) VALUES (1)", None, true),
            (&modify_t, "DELETE FROM ks.t WHERE k = 1", None, true),
            (&modify_t, "UPDATE ks.u SET v = 1 WHERE k = 1", None, false),
            (&modify_t, "SELECT * FROM ks.t", None, false),
            (
                &modify_t,
                "BEGIN BATCH INSERT INTO ks.t (k) VALUES (1); INSERT INTO ks.u (k) VALUES (1); APPLY BATCH",
                None,
                false,
            ),
            (&none, "SELECT * FROM system.local", None, true),
            (&none, "SELECT * FROM system_schema.tables", None, true),
            (&none, "SELECT * FROM system_virtual_schema.keyspaces", None, true),
            (&none, "SELECT * FROM system_auth.roles", None, false),
            (&none, "USE ks", None, true),
            (&none, "CREATE KEYSPACE k2 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}", None, false),
            (&all, "CREATE KEYSPACE k2 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}", None, true),
            (&all, "DROP TABLE ks.t", None, true),
            (&select_ks, "CREATE TABLE ks.n (k int PRIMARY KEY)", None, false),
            (&grants(&[("data/ks", &[Create])]), "CREATE TABLE ks.n (k int PRIMARY KEY)", None, true),
            (&grants(&[("data/ks", &[Alter])]), "ALTER TABLE ks.t ADD v int", None, true),
            (&grants(&[("data/ks/t", &[Drop])]), "DROP TABLE ks.t", None, true),
            (&grants(&[("data/ks/t", &[Drop])]), "DROP KEYSPACE ks", None, false),
            (&all, "CREATE ROLE r", None, false),
        ];
        for (g, cql, ks, expected) in cases {
            assert_eq!(allowed(g, cql, *ks), *expected, "{cql} with {g:?}");
        }
    }

    #[test]
    fn superusers_meet_everything() {
        let stmt = parse_statement("DROP ROLE r").unwrap();
        let reqs = requirements(&stmt, None).unwrap();
        assert!(reqs.iter().all(|r| meets(true, &Grants::new(), r)));
        assert!(!reqs.iter().all(|r| meets(false, &Grants::new(), r)));
    }

    #[test]
    fn an_unqualified_table_without_a_session_keyspace_is_an_error() {
        let stmt = parse_statement("SELECT * FROM t").unwrap();
        assert_eq!(requirements(&stmt, None), Err(NoKeyspace));
    }
}
