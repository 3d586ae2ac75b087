//! How the operator tools that speak CQL (`ringdb status`, `ringdb bench`) log in to a cluster
//! that runs with `authenticator: password`: `-u/--username` and `-p/--password`, or the
//! password from `RINGDB_PASSWORD` (which, unlike an argument, other users cannot read from the
//! process list). The tools send the credentials only when the server asks for them.

use ringdb_cql::client::Credentials;

/// Login options shared by the CQL-speaking tools (`#[command(flatten)]`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LoginArgs {
    /// Role to log in as, for a cluster with authentication.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Its password (or set RINGDB_PASSWORD).
    #[arg(short = 'p', long, env = "RINGDB_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

impl LoginArgs {
    /// The credentials to offer, `None` without a user name; a password without a user name or
    /// a user name without a password is an error.
    pub fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        match (&self.username, &self.password) {
            (None, None) => Ok(None),
            // RINGDB_PASSWORD set in the environment for another tool: not an error.
            (None, Some(_)) if std::env::var_os("RINGDB_PASSWORD").is_some() => Ok(None),
            (None, Some(_)) => anyhow::bail!("--password needs --username"),
            (Some(user), None) => {
                anyhow::bail!("no password for {user}: give --password or set RINGDB_PASSWORD")
            }
            (Some(user), Some(password)) => Ok(Some(Credentials {
                username: user.clone(),
                password: password.clone(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(username: Option<&str>, password: Option<&str>) -> LoginArgs {
        LoginArgs {
            username: username.map(str::to_string),
            password: password.map(str::to_string),
        }
    }

    #[test]
    fn credentials_need_both_halves() {
        assert_eq!(args(None, None).credentials().expect("none"), None);
        let both = args(Some("ops"), Some("s3cret"))
            .credentials()
            .expect("both")
            .expect("some");
        assert_eq!(
            (both.username.as_str(), both.password.as_str()),
            ("ops", "s3cret")
        );
        let e = args(Some("ops"), None)
            .credentials()
            .expect_err("no password");
        assert!(e.to_string().contains("RINGDB_PASSWORD"), "{e}");
    }
}
