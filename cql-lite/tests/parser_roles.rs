//! Role and permission statements (authentication and authorization): every form, checked
//! against the exact syntax tree, and the mistakes users make, checked for a useful error.

use ringdb_cql::ast::*;
use ringdb_cql::parser::parse_statement;

fn parse(text: &str) -> Statement {
    parse_statement(text).unwrap_or_else(|e| panic!("`{text}` does not parse: {e}"))
}

fn ks_table(ks: &str, t: &str) -> Resource {
    Resource::Table(QualifiedName {
        keyspace: Some(ks.to_string()),
        name: t.to_string(),
    })
}

#[test]
fn create_role_forms() {
    assert_eq!(
        parse("CREATE ROLE alice WITH PASSWORD = 's3cr''et' AND LOGIN = true"),
        Statement::CreateRole(CreateRole {
            name: "alice".into(),
            if_not_exists: false,
            options: RoleOptions {
                password: Some("s3cr'et".into()),
                login: Some(true),
                superuser: None,
            },
        })
    );
    assert_eq!(
        parse("create role if not exists 'Bob' with superuser = false and login = false and password = 'x';"),
        Statement::CreateRole(CreateRole {
            name: "Bob".into(),
            if_not_exists: true,
            options: RoleOptions {
                password: Some("x".into()),
                login: Some(false),
                superuser: Some(false),
            },
        })
    );
    assert_eq!(
        parse("CREATE ROLE \"Carol\""),
        Statement::CreateRole(CreateRole {
            name: "Carol".into(),
            if_not_exists: false,
            options: RoleOptions::default(),
        })
    );
}

#[test]
fn alter_and_drop_role() {
    assert_eq!(
        parse("ALTER ROLE alice WITH PASSWORD = 'new'"),
        Statement::AlterRole {
            name: "alice".into(),
            options: RoleOptions {
                password: Some("new".into()),
                ..RoleOptions::default()
            },
        }
    );
    assert_eq!(
        parse("ALTER ROLE alice WITH SUPERUSER = true AND LOGIN = 'false'"),
        Statement::AlterRole {
            name: "alice".into(),
            options: RoleOptions {
                password: None,
                login: Some(false),
                superuser: Some(true),
            },
        }
    );
    assert_eq!(
        parse("DROP ROLE IF EXISTS alice"),
        Statement::DropRole {
            name: "alice".into(),
            if_exists: true,
        }
    );
    assert_eq!(
        parse("drop role alice"),
        Statement::DropRole {
            name: "alice".into(),
            if_exists: false,
        }
    );
}

#[test]
fn grant_and_revoke_on_every_resource() {
    assert_eq!(
        parse("GRANT SELECT ON KEYSPACE ks TO alice"),
        Statement::Grant(Grant {
            permissions: vec![Permission::Select],
            resource: Resource::Keyspace("ks".into()),
            role: "alice".into(),
        })
    );
    assert_eq!(
        parse("GRANT ALL PERMISSIONS ON ALL KEYSPACES TO alice"),
        Statement::Grant(Grant {
            permissions: Permission::ALL.to_vec(),
            resource: Resource::AllKeyspaces,
            role: "alice".into(),
        })
    );
    assert_eq!(
        parse("grant modify permission on table ks.t to 'Bob'"),
        Statement::Grant(Grant {
            permissions: vec![Permission::Modify],
            resource: ks_table("ks", "t"),
            role: "Bob".into(),
        })
    );
    assert_eq!(
        parse("REVOKE ALL ON t FROM alice"),
        Statement::Revoke(Grant {
            permissions: Permission::ALL.to_vec(),
            resource: Resource::Table(QualifiedName {
                keyspace: None,
                name: "t".into(),
            }),
            role: "alice".into(),
        })
    );
    for (word, p) in [
        ("CREATE", Permission::Create),
        ("ALTER", Permission::Alter),
        ("DROP", Permission::Drop),
        ("AUTHORIZE", Permission::Authorize),
    ] {
        assert_eq!(
            parse(&format!("REVOKE {word} ON KEYSPACE k FROM r")),
            Statement::Revoke(Grant {
                permissions: vec![p],
                resource: Resource::Keyspace("k".into()),
                role: "r".into(),
            })
        );
    }
}

#[test]
fn list_roles_and_permissions() {
    assert_eq!(parse("LIST ROLES"), Statement::ListRoles { of: None });
    assert_eq!(
        parse("list roles of alice"),
        Statement::ListRoles {
            of: Some("alice".into())
        }
    );
    assert_eq!(
        parse("LIST ALL PERMISSIONS"),
        Statement::ListPermissions(ListPermissions {
            permissions: Permission::ALL.to_vec(),
            resource: None,
            role: None,
            norecursive: false,
        })
    );
    assert_eq!(
        parse("LIST ALL PERMISSIONS OF alice"),
        Statement::ListPermissions(ListPermissions {
            permissions: Permission::ALL.to_vec(),
            resource: None,
            role: Some("alice".into()),
            norecursive: false,
        })
    );
    assert_eq!(
        parse("LIST SELECT ON KEYSPACE ks OF alice NORECURSIVE"),
        Statement::ListPermissions(ListPermissions {
            permissions: vec![Permission::Select],
            resource: Some(Resource::Keyspace("ks".into())),
            role: Some("alice".into()),
            norecursive: true,
        })
    );
}

#[test]
fn role_statement_mistakes_are_explained() {
    let cases = [
        (
            "CREATE ROLE r WITH PASSWORD = secret",
            "a password as a 'string'",
        ),
        ("CREATE ROLE r WITH LOGIN = maybe", "true or false"),
        (
            "CREATE ROLE r WITH colour = 'red'",
            "PASSWORD, LOGIN or SUPERUSER",
        ),
        (
            "CREATE ROLE r WITH LOGIN = true AND LOGIN = false",
            "at most once",
        ),
        ("ALTER ROLE r", "WITH"),
        ("GRANT READ ON KEYSPACE k TO r", "a permission"),
        ("GRANT SELECT KEYSPACE k TO r", "ON"),
        ("GRANT SELECT ON KEYSPACE k r", "TO"),
        ("REVOKE SELECT ON KEYSPACE k TO r", "FROM"),
        ("GRANT SELECT ON ALL TABLES TO r", "KEYSPACES"),
    ];
    for (text, expected) in cases {
        let err = parse_statement(text).expect_err(text).to_string();
        assert!(err.contains(expected), "`{text}`: {err}");
    }
}

#[test]
fn role_statements_have_no_bind_markers() {
    for text in [
        "CREATE ROLE r WITH PASSWORD = 'p'",
        "GRANT SELECT ON KEYSPACE k TO r",
        "LIST ALL PERMISSIONS",
    ] {
        assert_eq!(parse(text).bind_marker_count(), 0, "{text}");
    }
}
