//! Role and permission statements: CREATE / ALTER / DROP ROLE, LIST ROLES, GRANT, REVOKE,
//! LIST PERMISSIONS, with Cassandra's rules on who may run them:
//!
//! - CREATE ROLE and DROP ROLE: superusers (a role cannot drop itself);
//! - ALTER ROLE: superusers; a role may change its own password, nothing else of its own;
//! - GRANT / REVOKE: superusers, or a role holding AUTHORIZE and the permissions given on the
//!   resource;
//! - LIST ROLES: superusers see every role, others themselves; LIST PERMISSIONS: superusers see
//!   anyone's, others only their own.

use std::sync::Arc;

use ringdb_cql::ast::{CreateRole, Grant, ListPermissions, Permission, RoleOptions, Statement};
use ringdb_cql::types::{CqlType, CqlValue};

use super::permissions::{self, Requirement};
use super::{password, store, Auth, RoleRecord, AUTH_KEYSPACE};
use crate::executor::{ColumnSpec, ExecError, Executor, QueryResult};
use crate::schema::Schema;

/// Who runs a role statement: `None` only for the node itself.
pub(crate) struct Caller<'a> {
    pub role: Option<&'a str>,
    pub session_keyspace: Option<&'a str>,
}

fn invalid<T>(message: impl Into<String>) -> Result<T, ExecError> {
    Err(ExecError::Invalid(message.into()))
}

fn unauthorized<T>(message: impl Into<String>) -> Result<T, ExecError> {
    Err(ExecError::Unauthorized(message.into()))
}

fn column(table: &str, name: &str, ty: CqlType) -> ColumnSpec {
    ColumnSpec {
        keyspace: AUTH_KEYSPACE.to_string(),
        table: table.to_string(),
        name: name.to_string(),
        ty,
    }
}

fn text(s: &str) -> Option<Vec<u8>> {
    Some(CqlValue::Text(s.to_string()).serialize())
}

fn boolean(b: bool) -> Option<Vec<u8>> {
    Some(CqlValue::Boolean(b).serialize())
}

async fn hash(pw: &str) -> Result<String, ExecError> {
    let pw = pw.to_string();
    tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|e| ExecError::Server(e.to_string()))?
        .map_err(|e| ExecError::Server(e.to_string()))
}

impl Auth {
    /// Whether the caller is a superuser (the node itself is).
    async fn caller_is_superuser(
        &self,
        exec: &Executor,
        caller: &Caller<'_>,
    ) -> Result<bool, ExecError> {
        match caller.role {
            None => Ok(true),
            Some(role) => Ok(self.role_state(exec, role).await?.is_superuser()),
        }
    }

    /// Runs a role or permission statement.
    pub(crate) async fn run_statement(
        self: &Arc<Self>,
        exec: &Executor,
        stmt: &Statement,
        caller: &Caller<'_>,
    ) -> Result<QueryResult, ExecError> {
        let result = match stmt {
            Statement::CreateRole(c) => self.create_role(exec, c).await,
            Statement::AlterRole { name, options } => {
                self.alter_role(exec, name, options, caller).await
            }
            Statement::DropRole { name, if_exists } => {
                self.drop_role(exec, name, *if_exists, caller).await
            }
            Statement::ListRoles { of } => self.list_roles(exec, of.as_deref(), caller).await,
            Statement::Grant(g) => self.grant(exec, g, true, caller).await,
            Statement::Revoke(g) => self.grant(exec, g, false, caller).await,
            Statement::ListPermissions(l) => self.list_permissions(exec, l, caller).await,
            _ => invalid("not a role statement"),
        };
        if !matches!(
            stmt,
            Statement::ListRoles { .. } | Statement::ListPermissions(_)
        ) {
            self.invalidate();
        }
        result
    }

    async fn create_role(&self, exec: &Executor, c: &CreateRole) -> Result<QueryResult, ExecError> {
        if store::read_role(exec, &c.name).await?.is_some() {
            if c.if_not_exists {
                return Ok(QueryResult::Void);
            }
            return invalid(format!("{} already exists", c.name));
        }
        let salted_hash = match &c.options.password {
            Some(p) if p.is_empty() => return invalid("Password must not be empty"),
            Some(p) => Some(hash(p).await?),
            None => None,
        };
        let record = RoleRecord {
            name: c.name.clone(),
            can_login: c.options.login.unwrap_or(false),
            is_superuser: c.options.superuser.unwrap_or(false),
            salted_hash,
        };
        store::write_role(exec, &record, None).await?;
        Ok(QueryResult::Void)
    }

    async fn alter_role(
        &self,
        exec: &Executor,
        name: &str,
        options: &RoleOptions,
        caller: &Caller<'_>,
    ) -> Result<QueryResult, ExecError> {
        let superuser = self.caller_is_superuser(exec, caller).await?;
        let own_password_only =
            caller.role == Some(name) && options.login.is_none() && options.superuser.is_none();
        if !superuser && !own_password_only {
            return unauthorized(format!(
                "User {} is not allowed to alter role {name}: only superusers may, and a role \
                 may change only its own password",
                caller.role.unwrap_or("?")
            ));
        }
        if caller.role == Some(name) && options.superuser == Some(false) {
            return unauthorized("You aren't allowed to alter your own superuser status");
        }
        if store::read_role(exec, name).await?.is_none() {
            return invalid(format!("{name} doesn't exist"));
        }
        let salted_hash = match &options.password {
            Some(p) if p.is_empty() => return invalid("Password must not be empty"),
            Some(p) => Some(hash(p).await?),
            None => None,
        };
        store::update_role(exec, name, options.login, options.superuser, salted_hash).await?;
        Ok(QueryResult::Void)
    }

    async fn drop_role(
        &self,
        exec: &Executor,
        name: &str,
        if_exists: bool,
        caller: &Caller<'_>,
    ) -> Result<QueryResult, ExecError> {
        if caller.role == Some(name) {
            return invalid("Cannot DROP primary role for current login");
        }
        if store::read_role(exec, name).await?.is_none() {
            if if_exists {
                return Ok(QueryResult::Void);
            }
            return invalid(format!("{name} doesn't exist"));
        }
        store::delete_role(exec, name).await?;
        Ok(QueryResult::Void)
    }

    async fn list_roles(
        &self,
        exec: &Executor,
        of: Option<&str>,
        caller: &Caller<'_>,
    ) -> Result<QueryResult, ExecError> {
        let superuser = self.caller_is_superuser(exec, caller).await?;
        let mut roles = store::list_roles(exec).await?;
        if let Some(of) = of {
            if !superuser && caller.role != Some(of) {
                return unauthorized(format!(
                    "You are not authorized to view roles granted to {of}"
                ));
            }
            if !roles.iter().any(|r| r.name == of) {
                return invalid(format!("{of} doesn't exist"));
            }
            roles.retain(|r| r.name == of);
        } else if !superuser {
            roles.retain(|r| Some(r.name.as_str()) == caller.role);
        }
        let columns = vec![
            column("roles", "role", CqlType::Text),
            column("roles", "super", CqlType::Boolean),
            column("roles", "login", CqlType::Boolean),
            column(
                "roles",
                "options",
                CqlType::Map(Box::new(CqlType::Text), Box::new(CqlType::Text)),
            ),
        ];
        let rows = roles
            .iter()
            .map(|r| {
                vec![
                    text(&r.name),
                    boolean(r.is_superuser),
                    boolean(r.can_login),
                    Some(CqlValue::Map(Vec::new()).serialize()),
                ]
            })
            .collect();
        Ok(QueryResult::Rows {
            columns,
            rows,
            paging_state: None,
        })
    }

    async fn grant(
        &self,
        exec: &Executor,
        g: &Grant,
        grant: bool,
        caller: &Caller<'_>,
    ) -> Result<QueryResult, ExecError> {
        let resource = permissions::resource_name(&g.resource, caller.session_keyspace)
            .map_err(|_| ExecError::Invalid("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename".into()))?;
        check_resource_exists(&exec.schema(), &resource)?;
        if let Some(role) = caller.role {
            let state = self.role_state(exec, role).await?;
            if !state.is_superuser() {
                let mut needed = vec![Permission::Authorize];
                needed.extend(g.permissions.iter().copied());
                for p in needed {
                    let req = Requirement::Permission {
                        permission: p,
                        resource: resource.clone(),
                    };
                    if !permissions::meets(false, &state.grants, &req) {
                        return unauthorized(format!(
                            "User {role} has no {} permission on {} or any of its parents",
                            p.name(),
                            permissions::display_resource(&resource)
                        ));
                    }
                }
            }
        }
        if store::read_role(exec, &g.role).await?.is_none() {
            return invalid(format!("Role {} doesn't exist", g.role));
        }
        store::change_grants(exec, &g.role, &resource, &g.permissions, grant).await?;
        Ok(QueryResult::Void)
    }

    async fn list_permissions(
        &self,
        exec: &Executor,
        l: &ListPermissions,
        caller: &Caller<'_>,
    ) -> Result<QueryResult, ExecError> {
        let superuser = self.caller_is_superuser(exec, caller).await?;
        if !superuser {
            match (&l.role, caller.role) {
                (Some(of), Some(me)) if of == me => {}
                (None, _) => {
                    return unauthorized("You are not authorized to view everyone's permissions")
                }
                (Some(of), _) => {
                    return unauthorized(format!(
                        "You are not authorized to view {of}'s permissions"
                    ))
                }
            }
        }
        if let Some(of) = &l.role {
            if store::read_role(exec, of).await?.is_none() {
                return invalid(format!("{of} doesn't exist"));
            }
        }
        let resource = match &l.resource {
            Some(r) => Some(
                permissions::resource_name(r, caller.session_keyspace).map_err(|_| {
                    ExecError::Invalid("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename".into())
                })?,
            ),
            None => None,
        };
        let mut grants = store::all_grants(exec).await?;
        grants.retain(|(role, res, perm)| {
            l.role.as_ref().is_none_or(|of| of == role)
                && l.permissions.contains(perm)
                && resource.as_ref().is_none_or(|wanted| {
                    if l.norecursive {
                        wanted == res
                    } else {
                        permissions::with_parents(wanted).contains(&res.as_str())
                    }
                })
        });
        grants.sort_by(|a, b| {
            (&a.0, &a.1, Permission::ALL.iter().position(|p| *p == a.2)).cmp(&(
                &b.0,
                &b.1,
                Permission::ALL.iter().position(|p| *p == b.2),
            ))
        });
        let columns = vec![
            column("permissions", "role", CqlType::Text),
            column("permissions", "username", CqlType::Text),
            column("permissions", "resource", CqlType::Text),
            column("permissions", "permission", CqlType::Text),
        ];
        let rows = grants
            .iter()
            .map(|(role, res, perm)| {
                vec![
                    text(role),
                    text(role),
                    text(&permissions::display_resource(res)),
                    text(perm.name()),
                ]
            })
            .collect();
        Ok(QueryResult::Rows {
            columns,
            rows,
            paging_state: None,
        })
    }
}

/// GRANT on a keyspace or table that does not exist is an error, as in Cassandra.
fn check_resource_exists(schema: &Schema, resource: &str) -> Result<(), ExecError> {
    let mut parts = resource.split('/').skip(1);
    match (parts.next(), parts.next()) {
        (None, _) => Ok(()),
        (Some(ks), None) if schema.keyspace(ks).is_some() => Ok(()),
        (Some(ks), Some(t)) if schema.table(ks, t).is_some() => Ok(()),
        _ => invalid(format!(
            "Resource {} doesn't exist",
            permissions::display_resource(resource)
        )),
    }
}
